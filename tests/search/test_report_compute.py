"""The page's numbers from trials alone: importance, best so far, the accuracy interval, mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.objective import get_objective
from search.report import compute, figures


def synthetic_trials(count: int = 40, seed: int = 0) -> pd.DataFrame:
    """The score follows the learning rate (log scale) and width; dropout is noise."""
    rng = np.random.default_rng(seed)
    rate = 10 ** rng.uniform(-4, -1, count)
    width = rng.choice([16, 32, 64], count)
    dropout = rng.uniform(0, 0.5, count)
    score = 0.9 - 0.08 * np.abs(np.log10(rate) + 2.5) + 0.001 * width + rng.normal(0, 0.005, count)
    return pd.DataFrame(
        {
            "trial_id": [f"{i:04d}" for i in range(count)],
            "status": ["COMPLETED"] * (count - 2) + ["FAILED", "CUT_BY_BUDGET"],
            "epochs": rng.choice([1, 3, 9], count),
            "score": np.where(np.arange(count) == count - 2, np.nan, score),
            "val_accuracy": score,
            "seconds": rng.uniform(5, 50, count),
            "finished_at": 1_000_000 + np.cumsum(rng.uniform(5, 50, count)),
            "learning_rate": rate,
            "filters": width,
            "dropout": dropout,
            "optimizer": rng.choice(["adamw", "sgd"], count),
        }
    )


def test_importance_finds_the_hyperparameters_the_score_depends_on() -> None:
    trials = synthetic_trials()
    table = compute.hyperparameter_importance(trials, get_objective("val_accuracy"))
    assert table is not None
    ranked = list(table["hyperparameter"])
    assert ranked[0] == "learning_rate"
    assert ranked.index("filters") < ranked.index("dropout")
    # The page's effect plot of the two most important renders.
    png = figures.effect_figure(trials, ranked[:2], "score", "val_accuracy")
    assert png.startswith(b"\x89PNG")


def test_importance_needs_six_ranked_trials() -> None:
    objective = get_objective("val_accuracy")
    # count - 1 ranked trials: the failed one has no score.
    assert compute.hyperparameter_importance(synthetic_trials(count=6), objective) is None
    assert compute.hyperparameter_importance(synthetic_trials(count=7), objective) is not None


def test_best_so_far_follows_finish_times_and_skips_failed_trials() -> None:
    trials = synthetic_trials(count=10)
    progress = compute.best_so_far_over_time(trials, get_objective("val_accuracy"))
    assert len(progress) == 9  # the failed trial has no score
    assert progress["minutes"].is_monotonic_increasing and progress["best"].is_monotonic_increasing
    assert progress["best"].iloc[-1] == pytest.approx(trials["score"].max())
    by_loss = compute.best_so_far_over_time(trials, get_objective("val_loss"))
    assert by_loss["best"].is_monotonic_decreasing


def test_accuracy_interval_is_wilson() -> None:
    low, high = compute.accuracy_interval(807, 1000)
    assert low == pytest.approx(0.7814, abs=1e-3) and high == pytest.approx(0.8306, abs=1e-3)
    assert compute.accuracy_interval(10, 10)[1] == 1.0


def test_confident_mistakes_are_wrong_and_surest_first() -> None:
    labels = np.array([0, 1, 2, 0])
    probabilities = np.array([[0.9, 0.1, 0], [0.7, 0.3, 0], [0.2, 0.5, 0.3], [0.4, 0.6, 0]])
    assert list(compute.confident_mistakes(labels, probabilities, 5)) == [1, 3, 2]
    assert list(compute.sample_indices(np.array([0, 1, 0, 1, 1]), 2, 1, seed=0)) in (
        [0, 1],
        [0, 3],
        [0, 4],
        [2, 1],
        [2, 3],
        [2, 4],
    )
