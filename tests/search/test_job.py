"""hypercnn run: one budget for search and final model, split by what the first trial measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import pandas as pd
import pytest
import tensorflow as tf

from search.cli import main
from spaces import register_space
from spaces.cnn import ClassicCNN

pytestmark = pytest.mark.slow


class PausedSpace(ClassicCNN):
    """The classic CNN with a pause in every training step: a deliberately slow configuration, whose
    exported model still loads (the pause layer is registered, and does nothing at inference)."""

    description = "test only: slow steps"
    seconds_per_step = 0.0

    def build_features(self, hp, x):
        return Pause(name="pause")(super().build_features(hp, x))


@keras.saving.register_keras_serializable(package="hypercnn_tests")
class Pause(keras.layers.Layer):
    def call(self, features, training=None):
        if not training:
            return features
        delay = tf.numpy_function(lambda: time.sleep(PausedSpace.seconds_per_step) or 0.0, [], tf.float64)
        return features + tf.cast(tf.reshape(delay, []), features.dtype)


def run_flags(data: Path, out: Path, budget: str, *extra: str) -> list[str]:
    return [
        "run",
        "--data",
        str(data),
        "--out",
        str(out),
        "--val-size",
        "40",
        "--test-size",
        "40",
        "--max-epochs",
        "2",
        "--factor",
        "2",
        "--progress",
        "off",
        "--time-budget",
        budget,
        *extra,
    ]


def test_run_searches_then_reports_inside_one_budget(tmp_path: Path, tiny_npz: Path, capsys) -> None:
    started = time.time()
    assert main(run_flags(tiny_npz, tmp_path / "run", "75s")) == 0
    elapsed = time.time() - started
    out = capsys.readouterr().out
    # The split is decided from the first trial's pace and said in one line.
    assert "min searching" in out and "min for the final model" in out
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(trials) > 1  # tiny images train fast: the plan leaves time to search
    assert elapsed < 75 * 1.1, elapsed


def test_a_budget_too_small_for_the_final_training_searches_nothing_more(
    tmp_path: Path, tiny_npz: Path, capsys
) -> None:
    # Deliberately slow steps: 200 train+validation images in batches of 8 at 0.08 s a step are 2 s per
    # epoch, so the final training's 30 epochs alone need more than the 60 s budget.
    register_space("paused-test-space")(PausedSpace)
    PausedSpace.seconds_per_step = 0.08
    flags = run_flags(tiny_npz, tmp_path / "run", "60s", "--space", "paused-test-space", "--batch-size", "8")
    try:
        assert main(flags) == 0
    finally:
        PausedSpace.seconds_per_step = 0.0
    out = capsys.readouterr().out
    assert "no search beyond its first trial" in out
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 1 and trials.loc[0, "proposal"] == "default"
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    # The final model is the default, trained for what the rest of the budget fits (more than the
    # 1 epoch its trial had).
    assert metrics["best_trial"] == trials.loc[0, "trial_id"] and metrics["retrain_epochs"] > 1
