"""retrain_best: the best configuration, trained afresh on train+validation for its best epoch count."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from search.config import SearchConfig
from search.data import Splits
from search.errors import HyperCNNError
from search.pipeline import make_dataset
from search.tuner import HyperCNNTuner


@dataclasses.dataclass
class BestTrial:
    trial_id: str
    val_accuracy: float
    epochs: int
    hyperparameters: kt.HyperParameters

    @property
    def values(self) -> dict[str, Any]:
        return {k: v for k, v in self.hyperparameters.values.items() if not k.startswith("tuner/")}


@dataclasses.dataclass
class Retrained:
    model: keras.Model
    history: dict[str, list[float]]
    seconds: float


def best_trial(tuner: HyperCNNTuner) -> BestTrial:
    trials = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None and t.status == "COMPLETED"]
    if not trials:
        raise HyperCNNError(
            f"{tuner.run.path} has no completed trial yet; run the search (longer) before the report"
        )
    trial = trials[0]
    record = tuner.run.read_trial_record(trial.trial_id)
    # The epoch at which validation accuracy peaked, counted from the start of training.
    epochs = record.get("best_epoch") or trial.hyperparameters.values.get("tuner/epochs", 1)
    return BestTrial(trial.trial_id, float(trial.score), int(epochs), trial.hyperparameters)


def retrain_best(config: SearchConfig, tuner: HyperCNNTuner, splits: Splits, best: BestTrial) -> Retrained:
    """No validation data is left to watch, so it trains exactly the epochs the search found best."""
    keras.utils.set_random_seed(config.seed)
    model = tuner.hypermodel.build(best.hyperparameters)
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    train = make_dataset(x, y, len(splits.class_names), config.batch_size, shuffle=True, seed=config.seed)
    print(
        f"retraining trial {best.trial_id} on train+validation ({len(y)} images) for {best.epochs} epoch(s)",
        flush=True,
    )
    started = time.time()
    history = tuner.hypermodel.fit(best.hyperparameters, model, train, epochs=best.epochs)
    curves = {"epoch": [e + 1 for e in history.epoch]}
    curves.update({name: [float(v) for v in values] for name, values in history.history.items()})
    return Retrained(model, curves, time.time() - started)
