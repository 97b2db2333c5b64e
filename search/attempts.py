"""Each run of a trial is an attempt with its own folder; its state is saved after every epoch.

A trial whose process died (kill -9, a lost worker) runs again as a new attempt that continues from
the newest epoch any earlier attempt saved: weights, optimizer state (its step count drives the
learning-rate schedule) and the metrics history so far. Attempts never write into each other's
folders, so a cut-off worker that still runs cannot spoil the newer attempt; the oracle moves the
accepted attempt's files into the trial folder (`commit`), where promotions and the report read them.

tuner/trial_0003/attempts/<attempt>/epoch-0004.weights.h5   the state after epoch 4 (written, then renamed)
                                   /epoch-0004.json         its history; written after the weights
                                   /checkpoint.weights.h5   KerasTuner's best epoch
                                   /checkpoint.last.weights.h5, hypercnn.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.runfolder import TRIAL_RECORD, write_json

if TYPE_CHECKING:  # only annotated here: `hypercnn status` reads this module without loading Keras
    import keras

ATTEMPTS = "attempts"
BEST_CHECKPOINT = "checkpoint.weights.h5"
LAST_CHECKPOINT = "checkpoint.last.weights.h5"
# What an accepted attempt leaves in its trial's folder.
COMMITTED_FILES = (BEST_CHECKPOINT, LAST_CHECKPOINT, TRIAL_RECORD)
_EPOCH_STATE = re.compile(r"^epoch-(\d{4,})\.json$")


@dataclasses.dataclass(frozen=True)
class EpochState:
    """What an earlier attempt saved after its newest epoch."""

    epoch: int
    weights: Path
    history: dict[str, list[float]]
    attempt: str


def attempt_dir(trial_dir: Path, attempt: str) -> Path:
    return trial_dir / ATTEMPTS / attempt


def save_epoch(folder: Path, model: keras.Model, epoch: int, history: dict[str, list[float]]) -> None:
    """Weights and optimizer state after `epoch`, then its history: a reader trusts an epoch only once
    its .json exists, and each file is written whole (written under another name, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"epoch-{epoch:04d}.weights.h5"
    partial = folder / f"epoch-{epoch:04d}.partial.weights.h5"
    model.save_weights(partial)
    os.replace(partial, weights)
    write_json(folder / f"epoch-{epoch:04d}.json", {"epoch": epoch, "history": history})
    # Only the newest epoch is needed to continue.
    for older in folder.glob("epoch-*"):
        match = re.match(r"^epoch-(\d{4,})\.", older.name)
        if match and int(match.group(1)) < epoch:
            older.unlink(missing_ok=True)


def newest_epoch(trial_dir: Path, exclude: str | None = None) -> EpochState | None:
    """The newest epoch any attempt of this trial saved whole (`exclude`: the asking attempt itself)."""
    best: EpochState | None = None
    for folder in sorted((trial_dir / ATTEMPTS).glob("*")):
        if folder.name == exclude:
            continue
        for state_file in folder.glob("epoch-*.json"):
            match = _EPOCH_STATE.match(state_file.name)
            weights = state_file.with_name(f"epoch-{match.group(1)}.weights.h5") if match else None
            if weights is None or not weights.is_file():
                continue
            try:
                state: dict[str, Any] = json.loads(state_file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if best is None or state["epoch"] > best.epoch:
                best = EpochState(int(state["epoch"]), weights, state["history"], folder.name)
    return best


def commit(trial_dir: Path, attempt: str) -> None:
    """Moves the accepted attempt's checkpoints and record into the trial folder, then drops every
    attempt's folder (their epoch states are no longer needed)."""
    source = attempt_dir(trial_dir, attempt)
    for name in COMMITTED_FILES:
        if (source / name).is_file():
            os.replace(source / name, trial_dir / name)
    shutil.rmtree(trial_dir / ATTEMPTS, ignore_errors=True)


def drop_checkpoints(trial_dir: Path) -> int:
    """Deletes a finished trial's checkpoints (kept: its record and KerasTuner's trial.json);
    returns the bytes freed."""
    freed = 0
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        path = trial_dir / name
        if path.is_file():
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
