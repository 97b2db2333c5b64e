"""README's benchmark tables, generated from results/bench_*.csv: no figure is typed by hand.

Each table sits in README.md between `<!-- table:NAME -->` and `<!-- /table:NAME -->`, where NAME is
the CSV's stem; this script rewrites what lies between, with the machine, commit, date and command
that every row of the CSV carries.

    .venv/bin/python bench/tables.py           # rewrite README.md
    .venv/bin/python bench/tables.py --check   # exit 1 if README.md is not what the CSVs say
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "results"

SYSTEM_NAMES = {
    "hypercnn": "HyperCNN, `hypercnn run` (defaults: `fast` space, it splits the budget itself)",
    "default_only": "HyperCNN's default configuration trained for the whole budget (no search)",
    "handwritten_cnn": "hand-written Keras CNN (conv-pool-dropout, L2, Adam, best-validation weights)",
    "keras_tuner_hyperresnet": "stock KerasTuner `Hyperband` over `HyperResNet` (max_epochs 9, factor 3)",
    "autokeras": "AutoKeras 3.0 `ImageClassifier`",
}


def _percent(value: object) -> str:
    return "" if pd.isna(value) else f"{100 * float(value):.2f} %"


def _number(value: object, digits: int = 1) -> str:
    if pd.isna(value):
        return ""
    return f"{float(value):,.{digits}f}"


def _integer(value: object) -> str:
    return "" if pd.isna(value) else f"{int(value):,}"


def provenance(table: pd.DataFrame, extra: str = "") -> str:
    """The one line that says where every row of the table was measured."""
    first = table.iloc[0]
    commands = " ; ".join(f"`{c}`" for c in dict.fromkeys(table["command"].dropna()))
    return (
        f"Measured at commit `{first['commit']}` on {first['date']}, on {first['machine']}{extra}. "
        f"Command: {commands}."
    )


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _seed(value: object) -> str:
    """A seed as written ("0", "mean"); pandas reads a column of numbers as floats."""
    if pd.isna(value):
        return ""
    try:
        return str(int(float(value)))
    except ValueError:
        return str(value)


def _figure_over_seeds(runs: pd.DataFrame) -> float | None:
    """One system's (and sampler's) test accuracy: its mean row over seeds where there is one, else
    its first scored run."""
    mean = runs[runs["seed"].astype(str) == "mean"]
    figures = (mean if len(mean) else runs)["test_accuracy"].dropna()
    return float(figures.iloc[0]) if len(figures) else None


def _hypercnn_figure(rows: pd.DataFrame) -> float | None:
    """HyperCNN's test accuracy at one budget (random sampler first: the default)."""
    ours = rows[rows["system"] == "hypercnn"]
    for sampler in ("random", "model"):
        figure = _figure_over_seeds(ours[ours["sampler"] == sampler])
        if figure is not None:
            return figure
    return None


def search_quality_table(table: pd.DataFrame) -> str:
    parts = [
        provenance(table)
        + " The validation column is the score each system chose its model by (HyperCNN: the chosen"
        " trial's score after its search epochs, before the final training), not a second test."
    ]
    header = [
        "system",
        "sampler",
        "seed",
        "test accuracy",
        "search's validation",
        "trials",
        "epochs",
        "search s",
        "wall s",
        "precision",
        "note",
    ]
    for budget, rows in table.groupby("budget_seconds", sort=True):
        body = []
        for row in rows.itertuples():
            accuracy = _percent(row.test_accuracy)
            spread = getattr(row, "test_accuracy_spread", None)
            if accuracy and not pd.isna(spread):
                accuracy += f" ± {100 * float(spread):.2f}"
            if row.system == "hypercnn" and accuracy:
                accuracy = f"**{accuracy}**"
            body.append(
                [
                    SYSTEM_NAMES.get(row.system, row.system),
                    "" if pd.isna(row.sampler) else str(row.sampler),
                    _seed(row.seed),
                    accuracy,
                    _percent(row.val_accuracy),
                    _number(row.trials, 0),
                    _integer(row.epochs),
                    _number(row.search_seconds, 0),
                    _number(row.wall_seconds, 0),
                    "" if pd.isna(row.precision) else str(row.precision),
                    "" if pd.isna(row.note) else str(row.note),
                ]
            )
        ours = _hypercnn_figure(rows)
        leads = []
        default = _figure_over_seeds(rows[rows["system"] == "default_only"])
        if ours is not None and default is not None:
            leads.append(f"HyperCNN against its default alone: {100 * (ours - default):+.2f} points")
        peers = rows[~rows["system"].isin(["hypercnn", "default_only"])]["test_accuracy"]
        if ours is not None and peers.notna().any():
            leads.append(f"against the best peer: {100 * (ours - peers.max()):+.2f} points")
        title = f"**{_number(budget, 0)} s per system.** " + ("; ".join(leads) + "." if leads else "")
        parts.append(title + "\n\n" + markdown(header, body))
    return "\n\n".join(parts)


def portfolio_table(table: pd.DataFrame) -> str:
    """Each candidate at each budget (in epochs of the default): its epochs at its own pace, its
    validation accuracy, and the difference to the default at the same budget."""
    header = [
        "budget (default epochs)",
        "candidate",
        "values",
        "cost per epoch",
        "epochs",
        "validation",
        "vs default",
    ]
    body = []
    # Each candidate against the default of its own seed (tables from before seeds were a flag: seed 0).
    seeds = table["seed"] if "seed" in table else pd.Series(0, index=table.index)
    several_seeds = seeds.nunique() > 1
    if several_seeds:
        header.insert(1, "seed")
    for (seed, budget), rows in table.groupby([seeds, "default_epochs"], sort=True):
        default = rows.loc[rows["candidate"] == "default", "val_accuracy"]
        for row in rows.sort_values("val_accuracy", ascending=False).itertuples():
            gain = "" if default.empty else f"{100 * (row.val_accuracy - default.iloc[0]):+.2f}"
            body.append(
                [
                    _integer(budget),
                    *([_seed(seed)] if several_seeds else []),
                    f"`{row.candidate}`",
                    "" if row.values == "{}" else f"`{row.values}`",
                    f"{float(row.cost_vs_default):.2f}x",
                    _integer(row.epochs),
                    _percent(row.val_accuracy),
                    gain,
                ]
            )
    return provenance(table) + "\n\n" + markdown(header, body)


def samplers_table(table: pd.DataFrame) -> str:
    header = ["sampler", "seed", "best validation accuracy", "trials", "model proposals", "search s"]
    body = []
    for row in table.itertuples():
        best = _percent(row.best_val_accuracy)
        if not pd.isna(row.best_val_accuracy_spread):
            best += f" ± {100 * float(row.best_val_accuracy_spread):.2f}"
        if str(row.seed) == "mean":
            best = f"**{best}**"
        body.append(
            [
                str(row.sampler),
                str(row.seed),
                best,
                _integer(row.trials),
                _integer(row.model_proposals),
                _number(row.search_seconds, 0),
            ]
        )
    first = table.iloc[0]
    extra = f", {_number(first['budget_seconds'], 0)} s of search per run on {first['images']} images"
    return provenance(table, extra) + "\n\n" + markdown(header, body)


def quickstart_table(table: pd.DataFrame) -> str:
    """`make run` on each machine (the emulated slow one included): what a newcomer's first job gives."""
    header = ["machine", "precision", "test accuracy", "trials", "final model", "epochs", "wall s", "plan"]
    body = [
        [
            str(row.machine),
            str(row.precision),
            f"**{_percent(row.test_accuracy)}** on {_integer(row.test_images)} images",
            _integer(row.trials),
            f"trial {int(row.final_trial):04d}: {row.chosen_because}",
            _integer(row.retrain_epochs),
            _number(row.wall_seconds, 0),
            str(row.plan),
        ]
        for row in table.itertuples()
    ]
    first = table.iloc[0]
    commands = " ; ".join(f"`{c}`" for c in dict.fromkeys(table["command"].dropna()))
    line = f"Measured at commit `{first['commit']}` on {first['date']}. Command: {commands}."
    return line + "\n\n" + markdown(header, body)


def throughput_table(table: pd.DataFrame) -> str:
    rows = [
        [
            f"`{row.space}`",
            _number(row.train_mflop_per_image),
            _number(row.plain_same_precision_images_per_s),
            _number(row.plain_float32_images_per_s),
            _number(row.hypercnn_images_per_s),
            f"**{float(row.speedup_same_precision):.2f}x**",
            f"{float(row.speedup_vs_float32):.2f}x",
            _number(row.hypercnn_gflop_per_s),
            _percent(row.mfu_vs_measured_peak),
            str(row.kernels),
        ]
        for row in table.itertuples()
    ]
    first = table.iloc[0]
    extra = (
        f"; HyperCNN in {first['precision']}, MFU against the {first['peak_dtype']} conv peak measured "
        "right before and after each space's epochs"
    )
    header = [
        "space (defaults)",
        "training MFLOP / image",
        f"plain `model.fit`, same precision ({first['precision']}) img/s",
        "plain `model.fit`, float32 img/s",
        "HyperCNN img/s",
        "speedup, same precision",
        "speedup vs float32",
        "GFLOP/s",
        "MFU",
        "kernels (chosen by spaces.kernels)",
    ]
    return provenance(table, extra) + "\n\n" + markdown(header, rows)


def paired_paths_table(
    table: pd.DataFrame, baseline: str, variant: str, header: list[str], more: Callable[[Any], list[str]]
) -> str:
    """Two HyperCNN paths timed in one run, epochs interleaved: a row per space that ran both, with
    their images/s, the variant's ratio to the baseline, and `more` columns."""
    rows = [
        [
            f"`{row.space}`",
            str(row.backend),
            _number(getattr(row, baseline)),
            _number(getattr(row, variant)),
            f"{getattr(row, variant) / getattr(row, baseline):.2f}x",
            *more(row),
        ]
        for row in table.itertuples()
        if not pd.isna(getattr(row, baseline)) and not pd.isna(getattr(row, variant))
    ]
    extra = f"; {table.iloc[0]['precision']}, epochs interleaved"
    return provenance(table, extra) + "\n\n" + markdown(["space (defaults)", "backend", *header], rows)


def augmentation_placement_table(table: pd.DataFrame) -> str:
    """Where training images are augmented on this machine: in tf.data or inside the training step."""
    header = [
        "augmentation in tf.data, img/s",
        "augmentation inside the training step, img/s",
        "in-step / tf.data",
    ]
    return paired_paths_table(
        table, "hypercnn_images_per_s", "hypercnn_in_step_augmentation_images_per_s", header, lambda row: []
    )


def device_loop_table(table: pd.DataFrame) -> str:
    """Where the training data lives on JAX: the device (spaces.device_loop) or host batches."""
    header = [
        "host batches (Keras's loop), img/s",
        "split on the device, img/s",
        "device / host",
        "plain model.fit float32, img/s",
        "first epoch's compile, s",
        "MFU (device loop)",
    ]

    def more(row: Any) -> list[str]:
        return [
            _number(row.plain_float32_images_per_s),
            _number(row.compile_s),
            f"{100 * row.mfu_vs_measured_peak:.1f} %",
        ]

    return paired_paths_table(
        table, "hypercnn_host_batches_images_per_s", "hypercnn_images_per_s", header, more
    )


def device_loop_tf_table(table: pd.DataFrame) -> str:
    """Where the training data lives on TensorFlow without a GPU: tf.data host batches (augmented in
    the pipeline: the CPU default) or the split on the device (spaces.device_loop)."""
    header = [
        "tf.data host batches (the CPU default), img/s",
        "split on the device, img/s",
        "device / host",
        "host batches augmented inside the step, img/s",
        "plain model.fit same precision, img/s",
    ]

    def more(row: Any) -> list[str]:
        return [
            _number(row.hypercnn_in_step_augmentation_images_per_s),
            _number(row.plain_same_precision_images_per_s),
        ]

    return paired_paths_table(
        table, "hypercnn_images_per_s", "hypercnn_device_loop_images_per_s", header, more
    )


def ema_table(table: pd.DataFrame) -> str:
    """Validation accuracy per EMA momentum (0: no average): each seed, the mean, and the mean's
    difference to no average beside the seeds' spread."""
    body = []
    baseline = table.loc[table["ema_momentum"] == 0, "val_accuracy"].mean()
    for momentum, rows in table.groupby("ema_momentum", sort=True):
        seeds = rows.sort_values("seed")
        mean, spread = seeds["val_accuracy"].mean(), seeds["val_accuracy"].std()  # as search_quality's
        body.append(
            [
                "none" if momentum == 0 else f"{float(momentum):g}",
                _integer(seeds["epochs"].iloc[0]),
                " / ".join(_percent(v) for v in seeds["val_accuracy"]),
                f"**{_percent(mean)}**" + ("" if pd.isna(spread) else f" ± {100 * spread:.2f}"),
                "" if momentum == 0 else f"{100 * (mean - baseline):+.2f}",
            ]
        )
    header = ["EMA momentum", "epochs", "validation, per seed", "mean ± spread", "vs none, points"]
    return provenance(table) + "\n\n" + markdown(header, body)


def flip_averaging_table(table: pd.DataFrame) -> str:
    rows = [
        [
            str(row.configuration),
            _integer(row.train_images),
            _integer(row.validation_images),
            _percent(row.val_accuracy_alone),
            _percent(row.val_accuracy_flip_averaged),
            f"{float(row.gain_points):+.2f}",
        ]
        for row in table.itertuples()
    ]
    header = ["configuration", "train images", "validation images", "alone", "flip-averaged", "gain, points"]
    return provenance(table) + "\n\n" + markdown(header, rows)


def internals_table(table: pd.DataFrame) -> str:
    rows = [
        [
            str(row.internal),
            _number(row.with_ms),
            _number(row.without_ms),
            f"{float(row.ratio):.2f}",
            str(row.verdict),
        ]
        for row in table.itertuples()
    ]
    header = ["internal (search/compat.py)", "with, ms", "without, ms", "ratio", "verdict"]
    extra = f"; medians of {int(table['repeats'].iloc[0])} interleaved repeats each"
    return provenance(table, extra) + "\n\n" + markdown(header, rows)


def soak_table(table: pd.DataFrame) -> str:
    rows = [
        [
            _integer(row.model_cache_mb),
            _integer(row.trials),
            _number(row.rss_mb_trial_5, 0),
            _number(row.rss_mb_trial_40, 0),
            _number(row.rss_mb_trial_100, 0),
            f"{float(row.growth_mb_40_to_100):+.0f}" if pd.notna(row.growth_mb_40_to_100) else "",
            _number(row.run_folder_mb),
            _number(row.peak_run_folder_mb),
        ]
        for row in table.itertuples()
    ]
    header = [
        "--model-cache-mb",
        "trials",
        "RSS at trial 5, MB",
        "at 40",
        "at 100",
        "growth 40 to 100, MB",
        "run folder at the end, MB",
        "largest, MB",
    ]
    extra = f"; {table['images'].iloc[0]}"
    return provenance(table, extra) + "\n\n" + markdown(header, rows)


def scaling_table(table: pd.DataFrame) -> str:
    rows = [
        [
            _integer(row.workers),
            _number(row.wall_seconds, 0),
            _integer(row.trials),
            _number(row.epochs_trained, 0),
            _number(row.epochs_per_hour),
            _number(row.train_images_per_second),
            f"{float(row.speedup_vs_fewest):.2f}x",
            _percent(row.best_val_accuracy),
        ]
        for row in table.itertuples()
    ]
    header = [
        "workers",
        "wall s",
        "trials",
        "epochs trained",
        "epochs per hour",
        "training images/s",
        "vs 1 worker",
        "best validation accuracy",
    ]
    extra = f"; {table['images'].iloc[0]}, {_number(table['budget_seconds'].iloc[0], 0)} s budget each"
    return provenance(table, extra) + "\n\n" + markdown(header, rows)


# Each family of CSVs shares a table: a CSV's family is the longest of these that its name is or
# starts with followed by "_" (bench_device_loop_tf before bench_device_loop). A new CSV of a family
# needs only its README markers, not a line here.
FAMILIES: dict[str, Callable[[pd.DataFrame], str]] = {
    "bench_soak": soak_table,
    "bench_scaling": scaling_table,
    "bench_search_quality": search_quality_table,
    "bench_samplers": samplers_table,
    "bench_portfolio": portfolio_table,
    "bench_ema": ema_table,
    "bench_throughput": throughput_table,
    "bench_augmentation_placement": augmentation_placement_table,
    "bench_device_loop": device_loop_table,
    "bench_device_loop_tf": device_loop_tf_table,
    "bench_flip_averaging": flip_averaging_table,
    "bench_quickstart": quickstart_table,
    "bench_internals": internals_table,
}


def renderer_for(name: str) -> Callable[[pd.DataFrame], str]:
    """The table of `name`'s family (FAMILIES)."""
    families = [f for f in FAMILIES if name == f or name.startswith(f + "_")]
    if not families:
        raise SystemExit(f"bench/tables.py: no table for {name}; add its family to FAMILIES")
    return FAMILIES[max(families, key=len)]


# Every results CSV's table: each must have its place in README.md (tests/test_readme_tables.py).
RENDERERS: dict[str, Callable[[pd.DataFrame], str]] = {
    csv.stem: renderer_for(csv.stem) for csv in sorted(RESULTS.glob("bench_*.csv"))
}


def render_readme(readme: str) -> str:
    # Every place README.md has; one whose CSV is gone says so rather than keep a stale table.
    for name in re.findall(r"<!-- table:(\w+) -->", readme):
        csv = RESULTS / f"{name}.csv"
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.DOTALL)
        body = (
            renderer_for(name)(pd.read_csv(csv, dtype={"commit": str}))
            if csv.is_file()
            else f"No results yet: `{csv.relative_to(ROOT)}` is missing."
        )
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), readme)
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the CSVs")
    args = parser.parse_args()
    current = README.read_text()
    rendered = render_readme(current)
    if args.check:
        if rendered != current:
            print(
                "README.md's tables differ from results/*.csv; run: python bench/tables.py", file=sys.stderr
            )
            sys.exit(1)
        return
    README.write_text(rendered)
    print(f"written: {README}")


if __name__ == "__main__":
    main()
