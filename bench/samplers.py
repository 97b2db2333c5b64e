"""Random against model-based (BOHB-style TPE) proposals: the same search, seeds and budget.

Searches only (no final training): each sampler and seed gets the same wall-clock budget on one
split of the CIFAR-10 train zip, with short brackets (max_epochs 3) so that many configurations
finish and the model has results to learn from. Written: results/bench_samplers.csv (best validation
accuracy per run, then each sampler's mean and spread) and results/bench_samplers.png (best validation
accuracy so far against search seconds, every run).

    .venv/bin/python bench/samplers.py --budget 240 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sampler_curves import COLORS as SAMPLER_COLORS  # noqa: E402  (one colour per sampler in both plots)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"
SPLIT = {"train_size": 1000, "val_size": 1000, "test_size": 1000}
SEARCH = {"max_epochs": 3, "factor": 3, "hyperband_iterations": 100}


def search_once(data: str, cache_dir: str, budget: float, sampler: str, seed: int, out: Path) -> None:
    from search import SearchConfig, run_search

    config = SearchConfig.create(
        data=data,
        out=str(out),
        overwrite=True,
        cache_dir=cache_dir,
        seed=seed,
        split_seed=0,
        time_budget_s=budget,
        sampler=sampler,
        progress="off",
        **SPLIT,
        **SEARCH,
    )
    run_search(config)


def best_so_far(trials_csv: Path):
    """(search seconds, best validation accuracy so far) after each trial, trials in the order they ran."""
    import pandas as pd

    trials = pd.read_csv(trials_csv, dtype={"trial_id": str}).sort_values("trial_id")
    seconds = trials["seconds"].fillna(0).cumsum()
    best = trials["val_accuracy"].fillna(0).cummax()
    return seconds.tolist(), best.tolist(), trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--budget", type=float, default=240.0, help="search seconds per run")
    parser.add_argument("--samplers", default="random,model")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--work", default=str(ROOT / "results" / "bench_samplers"))
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_samplers.csv"))
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: SAMPLER SEED in this process
    args = parser.parse_args()
    work = Path(args.work)
    if args.one:
        from search.quiet import load_keras_backend

        load_keras_backend()
        sampler, seed = args.one[0], int(args.one[1])
        search_once(args.data, args.cache_dir, args.budget, sampler, seed, work / f"{sampler}-seed{seed}")
        return

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from machine import machine_row, measure_conv_peak

    from search.quiet import load_keras_backend

    load_keras_backend()
    peak, _ = measure_conv_peak("float32")
    machine = machine_row(peak, precision="")
    print(f"machine: {machine['machine']}; commit {machine['commit']}", flush=True)
    rows = []
    figure, axis = plt.subplots(figsize=(7, 4))
    for sampler in args.samplers.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            print(f"=== {sampler}, seed {seed}: {args.budget:.0f} s", flush=True)
            started = time.time()
            command = [sys.executable, __file__, "--one", sampler, str(seed), "--data", args.data]
            command += ["--budget", str(args.budget), "--cache-dir", args.cache_dir, "--work", str(work)]
            subprocess.run(command, check=True)
            seconds, best, trials = best_so_far(work / f"{sampler}-seed{seed}" / "trials.csv")
            axis.step(
                seconds,
                best,
                where="post",
                color=SAMPLER_COLORS.get(sampler),
                alpha=0.8,
                label=f"{sampler}, seed {seed}",
            )
            rows.append(
                {
                    "sampler": sampler,
                    "seed": str(seed),
                    "best_val_accuracy": round(best[-1], 4),
                    "trials": len(trials),
                    "model_proposals": int((trials["proposal"] == "model").sum()),
                    "search_seconds": round(seconds[-1], 1),
                    "process_seconds": round(time.time() - started, 1),
                }
            )
    for sampler in args.samplers.split(","):
        scores = pd.Series([r["best_val_accuracy"] for r in rows if r["sampler"] == sampler])
        rows.append(
            {
                "sampler": sampler,
                "seed": "mean",
                "best_val_accuracy": round(float(scores.mean()), 4),
                "best_val_accuracy_spread": round(float(scores.std()), 4) if len(scores) > 1 else None,
            }
        )
    table = pd.DataFrame(rows)
    table["budget_seconds"] = args.budget
    table["images"] = f"{SPLIT['train_size']} train / {SPLIT['val_size']} validation"
    for column, value in machine.items():
        if column != "precision":
            table[column] = value
    first = f"{args.samplers.split(',')[0]}-seed{args.seeds.split(',')[0]}"
    table["precision"] = json.loads((work / first / "env.json").read_text())["hardware"]["precision"]
    axis.set_xlabel("search seconds (sum of trial times)")
    axis.set_ylabel("best validation accuracy so far")
    axis.set_title(f"random vs model-based proposals ({machine['machine']}, {machine['commit']})", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(Path(args.output).with_suffix(".png"), dpi=110)
    print(table.drop(columns=["command", "machine"]).to_string(index=False))
    table.to_csv(args.output, index=False)
    print(f"written: {args.output} and {Path(args.output).with_suffix('.png')}")


if __name__ == "__main__":
    main()
