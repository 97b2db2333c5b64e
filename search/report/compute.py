"""The report's numbers: pure functions from run-folder files and predictions to tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss

from search.runfolder import RunFolder

META_COLUMNS = [
    "trial_id",
    "status",
    "bracket",
    "round",
    "parent_trial",
    "proposal",
    "epochs",
    "initial_epoch",
    "epochs_trained",
    "best_epoch",
    "val_accuracy",
    "val_macro_f1",
    "val_loss",
    "accuracy",
    "loss",
    "seconds",
    "overhead_seconds",
    "error",
]


def leaderboard(trials: pd.DataFrame, objective: str = "val_accuracy", maximize: bool = True) -> pd.DataFrame:
    """Completed trials best first, then the rest (failed, cut short) in trial order."""
    if trials.empty:
        return trials
    ranked = trials.assign(_done=trials["status"].eq("COMPLETED")).sort_values(
        ["_done", objective, "trial_id"], ascending=[False, not maximize, True], na_position="last"
    )
    ranked = ranked.drop(columns="_done").reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    return ranked


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c not in META_COLUMNS and c != "rank"]


def trial_curves(run: RunFolder, trials: pd.DataFrame, trial_id: str) -> dict[str, list[float]]:
    """A trial's epochs joined to its Hyperband ancestors', so a promoted trial shows its whole life."""
    by_id = {str(row.trial_id): row for row in trials.itertuples()}
    chain = []
    current: str | None = trial_id
    while current and current in by_id and current not in chain:
        chain.append(current)
        parent = by_id[current].parent_trial
        current = None if pd.isna(parent) else str(parent).zfill(len(trial_id))
    curves: dict[str, list[float]] = {}
    for tid in reversed(chain):
        # A child resumes at its initial_epoch: drop the parent's epochs after that point.
        start = int(by_id[tid].initial_epoch or 0)
        kept = sum(1 for epoch in curves.get("epoch", []) if epoch <= start)
        curves = {name: values[:kept] for name, values in curves.items()}
        for name, values in run.read_trial_record(tid).get("history", {}).items():
            curves.setdefault(name, []).extend(values)
    return curves


def _safe_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """No zeros (log loss is infinite there), rows still summing to one (sklearn warns otherwise)."""
    clipped = np.clip(probabilities.astype(np.float64), 1e-7, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def test_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(class_names)))
    per_class = classification_report(
        y_true, predicted, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    return {
        "test_accuracy": float(accuracy_score(y_true, predicted)),
        "test_loss": float(log_loss(y_true, _safe_probabilities(probabilities), labels=labels)),
        "test_images": int(len(y_true)),
        "per_class": {
            name: {
                "precision": per_class[name]["precision"],
                "recall": per_class[name]["recall"],
                "f1": per_class[name]["f1-score"],
                "support": int(per_class[name]["support"]),
            }
            for name in class_names
        },
        "macro_f1": float(per_class["macro avg"]["f1-score"]),
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
    }


def per_class_table(metrics: dict[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(metrics["per_class"]).T
    table.index.name = "class"
    return table.reset_index()


def search_summary(trials: pd.DataFrame) -> dict[str, Any]:
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    return {
        "trials": int(len(trials)),
        "by_status": {str(k): int(v) for k, v in counts.items()},
        "epochs_trained": int(trials["epochs_trained"].fillna(0).sum()) if not trials.empty else 0,
        "search_seconds": float(trials["seconds"].fillna(0).sum()) if not trials.empty else 0.0,
    }
