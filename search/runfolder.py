"""The run-folder contract: every file a later step needs, under a stable name in results/<run>/.

run.json             the folder's format version (RUN_FORMAT) and the HyperCNN that wrote it
config.json          the SearchConfig
env.json             versions, hardware, data sha256, split sizes
job.json             hypercnn run's budget: the total, what each invocation spent, the split
search.json          hypercnn search's own budget ledger (the same form)
trials.csv           the leaderboard, one row per trial, updated as trials finish
tuner/               KerasTuner's own state (oracle.json, trial_*/), which resume reads; chief.json
                     (a chief/worker search); trial_*/attempts/ (search.attempts)
workers/             a chief/worker search's local workers: their logs and descriptions
report/              written by finalize: metrics.json, leaderboard.csv, predictions.npz (test labels
                     and probabilities), gallery.npz (the test images the figures show),
                     search_history.json (every trial's epochs); then index.html by the renderer,
                     which reads nothing else
model/               best.keras, saved_model/, model.tflite, model_dynamic_range.tflite, model.onnx,
                     model.json (formats, agreement, sizes, sha256), history.json
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from search.errors import HyperCNNError

TUNER_PROJECT = "tuner"
# 1: folders written before run.json existed (search state and best.keras only); 2: run.json, job.json
# and the finalized report files. Bump when a later step can no longer read what an earlier one wrote.
RUN_FORMAT = 2
TRIAL_RECORD = "hypercnn.json"
PACKAGES = (
    "hypercnn",
    "tensorflow",
    "keras",
    "keras-tuner",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "pillow",
    "optuna",
    "tf2onnx",
    "onnxruntime",
)


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    run_json = property(lambda self: self.path / "run.json")
    config = property(lambda self: self.path / "config.json")
    job_json = property(lambda self: self.path / "job.json")
    env = property(lambda self: self.path / "env.json")
    trials_csv = property(lambda self: self.path / "trials.csv")
    tuner_dir = property(lambda self: self.path / TUNER_PROJECT)
    report_dir = property(lambda self: self.path / "report")
    model_dir = property(lambda self: self.path / "model")
    model_file = property(lambda self: self.path / "model" / "best.keras")
    model_json = property(lambda self: self.path / "model" / "model.json")
    model_history = property(lambda self: self.path / "model" / "history.json")
    metrics_json = property(lambda self: self.path / "report" / "metrics.json")
    leaderboard_csv = property(lambda self: self.path / "report" / "leaderboard.csv")
    predictions = property(lambda self: self.path / "report" / "predictions.npz")
    gallery = property(lambda self: self.path / "report" / "gallery.npz")
    search_history = property(lambda self: self.path / "report" / "search_history.json")
    html = property(lambda self: self.path / "report" / "index.html")
    # search.chief: where the chief listens, its lease and deadline (workers read it); workers' logs.
    chief_json = property(lambda self: self.path / "tuner" / "chief.json")
    workers_dir = property(lambda self: self.path / "workers")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    search_json = property(lambda self: self.path / "search.json")

    def format_version(self) -> int | None:
        """The folder's format: RUN_FORMAT and below are read; None for a folder with no run at all."""
        if self.run_json.is_file():
            try:
                return int(json.loads(self.run_json.read_text())["format"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise HyperCNNError(
                    f"{self.run_json} is damaged; restore it from a copy of the run or write "
                    f'{{"format": {RUN_FORMAT}}} into it'
                ) from None
        return 1 if self.config.is_file() else None

    def check_format(self) -> int | None:
        version = self.format_version()
        if version is not None and version > RUN_FORMAT:
            raise HyperCNNError(
                f"{self.path} was written by a newer HyperCNN (run format {version}; this one reads up "
                f"to {RUN_FORMAT}); upgrade hypercnn to use it"
            )
        return version

    def write_format(self) -> None:
        write_json(self.run_json, {"format": RUN_FORMAT, "hypercnn": _own_version()})

    def trial_record(self, trial_id: str) -> Path:
        return self.tuner_dir / f"trial_{trial_id}" / TRIAL_RECORD

    def read_trial_record(self, trial_id: str) -> dict[str, Any]:
        path = self.trial_record(trial_id)
        return json.loads(path.read_text()) if path.is_file() else {}


def write_json(path: Path, content: Any) -> None:
    """Write-then-rename, so a kill mid-write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, default=_jsonable) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or (being replaced) unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_csv(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    table.to_csv(partial, index=False)
    os.replace(partial, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _own_version() -> str:
    try:
        return metadata.version("hypercnn")
    except metadata.PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment(hardware: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "packages": package_versions(),
        "platform": platform.platform(),
        "hardware": hardware,
        "data": data,
    }


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# "ValueError: ...", "keras_tuner.errors.FailedTrialError: ...": the line a traceback ends its chain with.
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")


def error_line(message: str | None) -> str:
    """A trial's failure in one line: the last exception's message, without its module path, ANSI
    colours, or the "Arguments received by ..." block that Keras appends after it."""
    lines = [_ANSI_ESCAPE.sub("", line).strip() for line in (message or "").strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    for index in range(len(lines) - 1, -1, -1):
        match = _EXCEPTION_LINE.match(lines[index])
        if match:
            kind, text = match.groups()
            following = lines[index + 1 : index + 3]
            if text.startswith("Exception encountered when calling") and following:
                text = f"{text} {following[0]}"  # Keras puts the real reason on the next line
            text = text or (following[0] if following else "")
            return text if "." in kind else f"{kind}: {text}"
    return lines[-1]


def trials_table(
    tuner_trials: dict, run: RunFolder, objective: str = "val_accuracy", proposals: dict | None = None
) -> pd.DataFrame:
    """One row per KerasTuner trial: id, status, where its configuration came from, every
    hyper-parameter, epochs, scores, seconds."""
    proposals = proposals or {}
    source_of: dict[str, str | None] = {}
    rows = []
    for trial_id, trial in sorted(tuner_trials.items()):
        values = dict(trial.hyperparameters.values)
        record = run.read_trial_record(trial_id)
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": record.get("status_note") or trial.status,
            "bracket": values.pop("tuner/bracket", None),
            "round": values.pop("tuner/round", None),
            "parent_trial": values.pop("tuner/trial_id", None),
            "epochs": values.pop("tuner/epochs", None),
            "initial_epoch": values.pop("tuner/initial_epoch", None),
        }
        # default, portfolio, random or model; a promotion keeps its first trial's configuration.
        row["proposal"] = source_of[trial_id] = proposals.get(trial_id) or source_of.get(row["parent_trial"])
        # What the trial is ranked by (search.ranking): the objective's best value it reached.
        row["score"] = None if trial.score is None or not math.isfinite(trial.score) else float(trial.score)
        row["epochs_trained"] = record.get("epochs_trained")
        row["best_epoch"] = record.get("best_epoch")
        for metric in dict.fromkeys(("val_accuracy", objective, "val_loss", "accuracy", "loss")):
            value = None
            if trial.metrics.exists(metric):
                value = trial.metrics.get_last_value(metric)
            row[metric] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        row["seconds"] = record.get("seconds")
        row["finished_at"] = record.get("finished_at")
        # Seconds not spent in training steps or validation: build, compile, tracing, checkpoints.
        row["overhead_seconds"] = record.get("overhead_seconds")
        row.update(values)
        # Who trained it (its last attempt's worker) and how many attempts it took (a lost worker's
        # trial is continued by another).
        row["worker"] = record.get("worker")
        row["attempts"] = record.get("attempts")
        row["error"] = error_line(trial.message) or record.get("error") or ""
        rows.append(row)
    return pd.DataFrame(rows)
