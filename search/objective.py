"""What the search maximises (or minimises): the one place that knows each objective's direction
and the Keras metric behind it."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from search.errors import HyperCNNError


@dataclasses.dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "max" or "min"

    @property
    def metric_name(self) -> str:
        return self.name.removeprefix("val_")

    def better(self, score: float | None, than: float | None) -> bool:
        if score is None or not math.isfinite(score):
            return False
        if than is None:
            return True
        return score > than if self.direction == "max" else score < than

    def sort_key(self, score: float) -> float:
        """Ascending order of this key puts the best score first."""
        return -score if self.direction == "max" else score

    def extra_metrics(self) -> list[Any]:
        """Keras metrics compiled beside loss and accuracy, so that the objective is logged every epoch."""
        if self.name == "val_macro_f1":
            import keras  # here, not at the top: config validation imports this module without Keras

            # Macro F1: every class counts the same, whatever its share of the images.
            return [keras.metrics.F1Score(average="macro", name="macro_f1")]
        return []


OBJECTIVES = {
    "val_accuracy": Objective("val_accuracy", "max"),
    # On imbalanced data accuracy rewards predicting the large classes; macro F1 does not.
    "val_macro_f1": Objective("val_macro_f1", "max"),
    "val_loss": Objective("val_loss", "min"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise HyperCNNError(f"--objective {name!r} is unknown; use {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
