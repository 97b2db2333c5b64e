"""RunArtifacts: everything the page shows, read from a finalized run folder and nothing else (no data
set, no TensorFlow), so a run copied off a GPU box renders anywhere."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.config import SearchConfig
from search.errors import HyperCNNError
from search.objective import Objective, get_objective
from search.runfolder import RUN_FORMAT, RunFolder


@dataclasses.dataclass
class RunArtifacts:
    run: RunFolder
    config: SearchConfig
    objective: Objective
    env: dict[str, Any]
    job: dict[str, Any] | None
    trials: pd.DataFrame
    leaderboard: pd.DataFrame
    history: dict[str, dict]
    metrics: dict[str, Any]
    model: dict[str, Any]
    final_history: dict[str, list[float]]
    y_true: np.ndarray
    probabilities: np.ndarray
    gallery: dict[str, np.ndarray]

    @property
    def class_names(self) -> list[str]:
        return list(self.env["data"]["classes"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HyperCNNError(
            f"{path} cannot be read ({type(exc).__name__}); finalize the run again where its data is: "
            f"hypercnn finalize {path.parent.parent}"
        ) from None


def is_finalized(run: RunFolder) -> bool:
    return run.metrics_json.is_file()


def load_artifacts(run_dir: str | Path) -> RunArtifacts:
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise HyperCNNError(f"run folder {run.path} does not exist; give a folder written by hypercnn run")
    version = run.check_format()
    if version is None:
        raise HyperCNNError(f"{run.path} is not a HyperCNN run folder (no config.json)")
    if not is_finalized(run):
        older = f" (run format {version}, from an earlier HyperCNN)" if version < RUN_FORMAT else ""
        raise HyperCNNError(
            f"{run.path} has no finalized model yet{older}; run 'hypercnn finalize {run.path}' on a "
            "machine with its data, then render"
        )
    config = SearchConfig.load(run.path)
    trials = pd.read_csv(run.trials_csv, dtype={"trial_id": str, "parent_trial": str})
    leaderboard = pd.read_csv(run.leaderboard_csv, dtype={"trial_id": str, "parent_trial": str})
    with np.load(run.predictions) as predictions:
        y_true, probabilities = predictions["y_true"].astype(np.int64), predictions["probabilities"]
    with np.load(run.gallery) as gallery:
        images = {name: gallery[name] for name in gallery.files}
    return RunArtifacts(
        run=run,
        config=config,
        objective=get_objective(config.objective),
        env=_read_json(run.env),
        job=_read_json(run.job_json) if run.job_json.is_file() else None,
        trials=trials,
        leaderboard=leaderboard,
        history=_read_json(run.search_history),
        metrics=_read_json(run.metrics_json),
        model=_read_json(run.model_json),
        final_history=_read_json(run.model_history) if run.model_history.is_file() else {},
        y_true=y_true,
        probabilities=probabilities,
        gallery=images,
    )


def needs_finalize(run_dir: str | Path) -> bool:
    """True when the run has no finalized report files, or its search has gone on since they were
    written (more trials in trials.csv than when it was finalized)."""
    run = RunFolder(run_dir)
    if not is_finalized(run):
        return True
    finalized = _read_json(run.metrics_json).get("trials_at_finalize")
    if finalized is None or not run.trials_csv.is_file():
        return finalized is None
    return len(pd.read_csv(run.trials_csv, usecols=["trial_id"])) != finalized
