"""Memory and disk over a long search: 100 small trials in one training process.

Runs a real `hypercnn search` (fast space, 600 images of the CIFAR-10 train zip, Hyperband
max_epochs 3, factor 3, as many iterations as 100 trials need) as a child process and reads its
resident memory from /proc whenever a trial finishes. Prints RSS at trials 5, 40 and 100, the growth
from 40 to 100, and the run folder's size; writes results/bench_soak.csv. KerasTuner alone is known
to grow about 1 GB per 20 trials (keras-tuner #395); the goal here is under 150 MB from trial 40 to
100, once the model cache (--model-cache-mb) is full.

    .venv/bin/python bench/soak.py --trials 100
    .venv/bin/python bench/soak.py --trials 100 --model-cache-mb 0   # no cache: promotions reload
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"
CHECKPOINTS = (5, 40, 100)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def finished_trials(run: Path) -> int:
    import pandas as pd

    try:
        return len(pd.read_csv(run / "trials.csv"))
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--model-cache-mb", type=int, default=256)
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--work", default=str(ROOT / "results" / "bench_soak"))
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_soak.csv"))
    args = parser.parse_args()

    import pandas as pd
    from machine import machine_row, measure_conv_peak

    from search.attempts import folder_bytes
    from search.quiet import load_keras_backend

    load_keras_backend()
    peak, _ = measure_conv_peak("float32")
    machine = machine_row(peak, precision="float32")
    print(f"machine: {machine['machine']}; commit {machine['commit']}", flush=True)
    run = Path(args.work) / f"cache{args.model_cache_mb}"
    shutil.rmtree(run, ignore_errors=True)  # an earlier soak's trials.csv must not count
    # 6 trials per Hyperband iteration at max_epochs 3, factor 3.
    iterations = -(-args.trials // 6)
    command = [
        sys.executable, "-m", "search", "search", "--data", args.data, "--out", str(run), "--overwrite",
        "--train-size", "600", "--val-size", "200", "--test-size", "200", "--batch-size", "64",
        "--max-epochs", "3", "--factor", "3", "--hyperband-iterations", str(iterations),
        "--precision", "float32", "--progress", "off", "--cache-dir", args.cache_dir,
        "--model-cache-mb", str(args.model_cache_mb),
    ]  # fmt: skip
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[int, float] = {}
    peak_rss, peak_disk = 0.0, 0
    try:
        while process.poll() is None:
            time.sleep(0.2)
            done = finished_trials(run)
            rss = rss_mb(process.pid)
            if rss is not None:
                peak_rss = max(peak_rss, rss)
                if done and done not in samples:
                    samples[done] = rss
                    if done in CHECKPOINTS or done % 10 == 0:
                        print(
                            f"trial {done}: RSS {rss:.0f} MB, run folder {folder_bytes(run) / 2**20:.0f} MB"
                        )
            if done % 10 == 0:
                peak_disk = max(peak_disk, folder_bytes(run))
            if done >= args.trials:
                process.terminate()
                break
    finally:
        if process.poll() is None:
            process.wait(timeout=60)
    reached = max(samples) if samples else 0

    def at(trial: int) -> float | None:
        near = [t for t in samples if t >= trial]
        return round(samples[min(near)], 1) if near else None

    disk = folder_bytes(run)
    row = {
        "trials": reached,
        "model_cache_mb": args.model_cache_mb,
        "rss_mb_trial_5": at(5),
        "rss_mb_trial_40": at(40),
        "rss_mb_trial_100": at(100),
        "growth_mb_40_to_100": round(at(100) - at(40), 1) if at(100) and at(40) else None,
        "peak_rss_mb": round(peak_rss, 1),
        "run_folder_mb": round(disk / 2**20, 1),
        "peak_run_folder_mb": round(max(peak_disk, disk) / 2**20, 1),
        "seconds": round(time.time() - started, 1),
        "images": "600 train / 200 validation, fast space, batch 64",
        **machine,
    }
    print({k: v for k, v in row.items() if k not in ("command", "machine")})
    table = pd.DataFrame([row])
    output = Path(args.output)
    if output.is_file():
        from machine import merge_rows

        table = merge_rows(output, table, key="model_cache_mb")
    table.to_csv(output, index=False)
    print(f"written: {output}")


if __name__ == "__main__":
    main()
