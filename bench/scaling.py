"""The same search with 1 and with N workers for the same wall time: epochs trained per hour and the
best validation accuracy.

Each run is a real `hypercnn search --workers K --time-budget T` (fast space, a split of the CIFAR-10
train zip) timed from its start to its exit, worker start-up included. Epochs per hour count every
epoch trials trained (trials.csv's epochs_trained), images per second every training image. On a
CPU, K workers split the cores (K processes of cores/K threads each); on a GPU machine each worker
gets its own GPU (or, with more workers than GPUs, they share them). Writes results/bench_scaling.csv.

    .venv/bin/python bench/scaling.py --workers 1,2 --budget 300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"
SPLIT = ("--train-size", "4000", "--val-size", "1000", "--test-size", "1000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--budget", type=float, default=300.0, help="wall seconds per search")
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--work", default=str(ROOT / "results" / "bench_scaling"))
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_scaling.csv"))
    args = parser.parse_args()

    import pandas as pd
    from machine import machine_row, measure_conv_peak

    from search.quiet import load_keras_backend

    load_keras_backend()
    peak, _ = measure_conv_peak("float32")
    machine = machine_row(peak, precision="float32")
    print(f"machine: {machine['machine']}; commit {machine['commit']}", flush=True)
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        run = Path(args.work) / f"workers{workers}"
        command = [
            sys.executable, "-m", "search", "search", "--data", args.data, "--out", str(run), "--overwrite",
            *SPLIT, "--max-epochs", "9", "--factor", "3", "--precision", "float32", "--progress", "off",
            "--time-budget", f"{args.budget}s", "--workers", str(workers), "--cache-dir", args.cache_dir,
        ]  # fmt: skip
        print(f"=== {workers} worker(s), {args.budget:.0f} s", flush=True)
        started = time.time()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.time() - started
        trials = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
        epochs = float(trials["epochs_trained"].fillna(0).sum())
        train_images = int(SPLIT[1])
        rows.append(
            {
                "workers": workers,
                "budget_seconds": args.budget,
                "wall_seconds": round(wall, 1),
                "trials": len(trials),
                "epochs_trained": epochs,
                "epochs_per_hour": round(epochs / wall * 3600, 1),
                "train_images_per_second": round(epochs * train_images / wall, 1),
                "best_val_accuracy": round(float(trials["score"].max()), 4),
                "images": f"{train_images} train / {SPLIT[3]} validation, fast space, batch 128",
                **machine,
            }
        )
        print({k: v for k, v in rows[-1].items() if k not in ("command", "machine")}, flush=True)
    table = pd.DataFrame(rows)
    base = table.loc[table["workers"] == table["workers"].min(), "epochs_per_hour"].iloc[0]
    table["speedup_vs_fewest"] = (table["epochs_per_hour"] / base).round(2)
    table.to_csv(args.output, index=False)
    print(table.drop(columns=["command", "machine"]).to_string(index=False))
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
