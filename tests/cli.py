"""Running the hypercnn command the way a user does (a subprocess), for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def hypercnn(*argv: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "search", *argv], capture_output=True, text=True, env=environment, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hypercnn {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def report_budget(run: Path, epochs: int = 8) -> float:
    """Wall time for a finalize step whose retrain fits about `epochs` epochs of the winner at the
    search's own pace. The winner differs in cost by 10x between runs (the `cnn` space's widths), so a
    fixed budget fit 20 epochs of one winner and 1 epoch of another."""
    from search.retrain import AFTER_TRAINING_SECONDS, RETRAIN_BUDGET_MARGIN

    board = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    done = board[board["status"] == "COMPLETED"]
    best = done.sort_values(["val_accuracy", "trial_id"], ascending=[False, True]).iloc[0]
    record = json.loads((run / "tuner" / f"trial_{best.trial_id}" / "hypercnn.json").read_text())
    # 200 train+validation images against the trial's 160 training images.
    per_epoch = record["train_seconds"] / record["epochs_trained"] * 200 / 160
    fixed = record["setup_seconds"] + record["trace_seconds"]
    return (AFTER_TRAINING_SECONDS + fixed + epochs * per_epoch) / RETRAIN_BUDGET_MARGIN + 5


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run folder whose config points at the copy (as a user's copied folder would be
    resumed with --out pointing at it)."""
    import shutil

    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "out": str(target)}))
    return target
