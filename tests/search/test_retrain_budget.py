"""How many epochs the report's retrain fits in a time budget, from the search's measured pace."""

from __future__ import annotations

import keras_tuner as kt

from search.retrain import AFTER_TRAINING_SECONDS, RETRAIN_BUDGET_MARGIN, BestTrial, retrain_epochs

BEST = BestTrial("0003", 0.7, epochs=3, hyperparameters=kt.HyperParameters())
# A 3-epoch trial on 1,000 images: 6 s of steady steps (2 ms an image), 4 s of build and tracing.
RECORD = {
    "seconds": 14.0,
    "epochs_trained": 3,
    "train_seconds": 6.0,
    "setup_seconds": 1.0,
    "trace_seconds": 3.0,
}

SIZES = {"images": 1200, "train_images": 1000, "test_images": 500}


def test_without_a_budget_the_best_epoch_count() -> None:
    assert retrain_epochs(BEST, RECORD, **SIZES, budget_s=None) == 3


def test_a_budget_is_filled_at_the_measured_steady_pace() -> None:
    budget = 300.0
    epochs = retrain_epochs(BEST, RECORD, **SIZES, budget_s=budget)
    after = AFTER_TRAINING_SECONDS + 4.0 + 2 * 500 * 0.002 / 3
    assert epochs == int((RETRAIN_BUDGET_MARGIN * budget - after) / (0.002 * 1200))  # 100 epochs
    # From wall seconds alone (an older record) the pace is slower, so fewer epochs fit.
    old = {"seconds": 14.0, "epochs_trained": 3}
    assert retrain_epochs(BEST, old, **SIZES, budget_s=budget) < epochs


def test_a_tiny_budget_still_trains_one_epoch() -> None:
    assert retrain_epochs(BEST, RECORD, **SIZES, budget_s=5.0) == 1
