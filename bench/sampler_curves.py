"""Best validation accuracy against wall-clock time, both samplers, from one search_quality invocation.

bench/search_quality.py keeps each HyperCNN run's leaderboard (`<work>/hypercnn-SAMPLER-seedN/run/
trials.csv`); this draws, for every sampler and seed of that invocation, the best validation accuracy
found so far against seconds since the search started (each trial's `finished_at`), and titles the
plot with the machine and commit of the invocation's CSV, so that the picture and the table belong
to the same run.

    .venv/bin/python bench/sampler_curves.py --work /tmp/sqs900 \
        --table results/bench_search_quality_bf16_samplers.csv \
        --output results/bench_search_quality_bf16_samplers.png
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

COLORS = {"random": "#1f77b4", "model": "#d62728"}
LINE_STYLES = ("-", "--", ":", "-.")  # one per seed, so that a sampler's seeds stay apart
RUN_NAME = re.compile(r"hypercnn-(?P<sampler>\w+)-seed(?P<seed>\d+)$")


def best_over_time(trials_csv: Path) -> tuple[list[float], list[float]]:
    """(seconds since the search started, best validation accuracy so far), one point per finished trial."""
    trials = pd.read_csv(trials_csv, dtype={"trial_id": str})
    finished = trials.dropna(subset=["finished_at"]).sort_values("finished_at")
    if finished.empty:
        return [], []
    started = float((finished["finished_at"] - finished["seconds"].fillna(0)).min())
    seconds = (finished["finished_at"] - started).tolist()
    best = finished["val_accuracy"].fillna(0).cummax().tolist()
    return seconds, best


def runs(work: Path) -> list[tuple[str, int, Path]]:
    """(sampler, seed, trials.csv) of every HyperCNN run under an invocation's work folder."""
    found = []
    for folder in sorted(work.iterdir()):
        match = RUN_NAME.match(folder.name)
        if match and (folder / "run" / "trials.csv").is_file():
            found.append((match["sampler"], int(match["seed"]), folder / "run" / "trials.csv"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="search_quality.py's --work folder")
    parser.add_argument("--table", required=True, help="the CSV that invocation wrote")
    parser.add_argument("--output", required=True, help="the PNG to write")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = runs(Path(args.work))
    if not found:
        raise SystemExit(
            f"no hypercnn-SAMPLER-seedN/run/trials.csv under {args.work}: pass search_quality's --work"
        )
    table = pd.read_csv(args.table)
    first = table.iloc[0]
    figure, axis = plt.subplots(figsize=(7, 4))
    for sampler, seed, trials_csv in found:
        seconds, best = best_over_time(trials_csv)
        label = f"{sampler}, seed {seed}"
        axis.step(
            seconds,
            best,
            where="post",
            color=COLORS.get(sampler),
            alpha=0.8,
            label=label,
            linestyle=LINE_STYLES[seed % len(LINE_STYLES)],
        )
    axis.set_xlabel("seconds since the search started")
    axis.set_ylabel("best validation accuracy so far")
    axis.set_title(
        f"{first['machine']}, commit {first['commit']}, {float(first['budget_seconds']):.0f} s per run",
        fontsize=9,
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"wrote {args.output} ({len(found)} runs)")


if __name__ == "__main__":
    main()
