"""bench/sampler_curves.py: the best validation accuracy over wall-clock time, per HyperCNN run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.bench_scripts import load_bench_script


@pytest.fixture(scope="module")
def curves():
    return load_bench_script("sampler_curves")


def test_the_curve_follows_finishing_order_and_never_falls(curves, tmp_path: Path) -> None:
    # Trial ids are not finishing order under several workers, and a cut trial has no accuracy.
    pd.DataFrame(
        {
            "trial_id": ["0000", "0001", "0002", "0003"],
            "val_accuracy": [0.40, 0.60, None, 0.50],
            "seconds": [10.0, 20.0, 5.0, 10.0],
            "finished_at": [1010.0, 1060.0, 1045.0, 1030.0],
        }
    ).to_csv(tmp_path / "trials.csv", index=False)
    seconds, best = curves.best_over_time(tmp_path / "trials.csv")
    # The search started when the first trial did (1000), and each point is a trial's finish.
    assert seconds == [10.0, 30.0, 45.0, 60.0]
    assert best == [0.40, 0.50, 0.50, 0.60]


def test_only_hypercnn_runs_with_a_leaderboard_are_drawn(curves, tmp_path: Path) -> None:
    for name in ("hypercnn-model-seed2", "hypercnn-random-seed0", "default_only-random-seed0", "hypercnn-x"):
        (tmp_path / name / "run").mkdir(parents=True)
        (tmp_path / name / "run" / "trials.csv").write_text("trial_id\n")
    (tmp_path / "hypercnn-random-seed1" / "run").mkdir(parents=True)  # no trial finished: no file
    found = [(sampler, seed) for sampler, seed, _ in curves.runs(tmp_path)]
    assert found == [("model", 2), ("random", 0)]
