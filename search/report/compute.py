"""The report's numbers: pure functions from run-folder files and predictions to tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss

from search import ranking
from search.objective import Objective

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
    "score",
    "cut",
    "seconds",
    "overhead_seconds",
    "finished_at",
    "error",
]


def leaderboard(trials: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """trials.csv in search.ranking's order: the same rule the final choice and the tuner use."""
    return ranking.leaderboard(trials, objective)


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c not in META_COLUMNS and c != "rank"]


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
    low, high = accuracy_interval(int(np.sum(predicted == y_true)), len(y_true))
    return {
        "test_accuracy": float(accuracy_score(y_true, predicted)),
        "test_accuracy_ci95": [low, high],
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


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy: honest near 0 and 1, and for a few hundred test images."""
    if total == 0:
        return 0.0, 1.0
    interval = binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def sample_indices(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """A few test images of every class (fewer where a class has fewer), class by class."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        indices = np.flatnonzero(labels == label)
        chosen.extend(sorted(rng.choice(indices, size=min(per_class, len(indices)), replace=False)))
    return np.asarray(chosen, dtype=np.int64)


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """The wrong predictions the model was surest of, surest first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:count]].astype(np.int64)


def trial_chain_curves(
    history: dict[str, dict], trials: pd.DataFrame, trial_id: str
) -> dict[str, list[float]]:
    """A trial's epochs joined to its Hyperband ancestors', so a promoted trial shows its whole life
    (from the finalized search_history.json)."""
    by_id = {str(row.trial_id): row for row in trials.itertuples()}
    chain: list[str] = []
    current: str | None = trial_id
    while current and current in by_id and current not in chain:
        chain.append(current)
        parent = by_id[current].parent_trial
        current = None if pd.isna(parent) else str(parent).zfill(len(trial_id))
    curves: dict[str, list[float]] = {}
    for tid in reversed(chain):
        start = int(by_id[tid].initial_epoch or 0) if not pd.isna(by_id[tid].initial_epoch) else 0
        kept = sum(1 for epoch in curves.get("epoch", []) if epoch <= start)
        curves = {name: values[:kept] for name, values in curves.items()}
        for name, values in history.get(tid, {}).get("history", {}).items():
            curves.setdefault(name, []).extend(values)
    return curves


def best_so_far_over_time(trials: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Minutes since the first trial started against the best score finished by then (ranked trials
    only). Trials without an end time (records from before it was kept) are placed by the sum of
    the seconds of the trials before them."""
    if trials.empty:
        return pd.DataFrame(columns=["minutes", "score", "best"])
    seconds = trials["seconds"].fillna(0).astype(float)
    finished = trials["finished_at"] if "finished_at" in trials else pd.Series([np.nan] * len(trials))
    if finished.notna().all():
        start = float((finished.astype(float) - seconds).min())
        minutes = (finished.astype(float) - start) / 60
    else:
        minutes = seconds.cumsum() / 60
    score_column = "score" if "score" in trials else objective.name
    ranked = ranking.ranked_mask(trials, score_column)
    table = pd.DataFrame({"minutes": minutes, "score": trials[score_column]})[ranked].sort_values("minutes")
    best = table["score"].cummax() if objective.direction == "max" else table["score"].cummin()
    return table.assign(best=best).reset_index(drop=True)


def hyperparameter_importance(
    trials: pd.DataFrame, objective: Objective, seed: int = 0
) -> pd.DataFrame | None:
    """How much each hyper-parameter explains the score: a random forest fitted to the ranked trials
    (epochs included, since Hyperband's budgets move the score most), then permutation importance.
    None when fewer than 6 trials have a score: a forest on fewer says nothing."""
    score_column = "score" if "score" in trials else objective.name
    names = hyperparameter_columns(trials)
    done = trials[ranking.ranked_mask(trials, score_column)]
    varying = [name for name in names if done[name].astype(str).nunique() > 1]
    if len(done) < 6 or not varying:
        return None
    features = pd.DataFrame(index=done.index)
    for name in [*varying, "epochs"]:
        column = done[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().sum() == column.notna().sum() and column.dtype != bool:
            # Unset conditional values (NaN) become a value no set one takes.
            features[name] = numeric.fillna(numeric.min() - 1 if numeric.notna().any() else -1)
        else:
            features[name] = column.astype(str).astype("category").cat.codes
    target = done[score_column].astype(float).to_numpy()
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed)
    forest.fit(features, target)
    importance = permutation_importance(forest, features, target, n_repeats=10, random_state=seed)
    table = pd.DataFrame(
        {
            "hyperparameter": list(features.columns),
            "importance": importance.importances_mean,
            "spread": importance.importances_std,
        }
    )
    return table.sort_values("importance", ascending=False).reset_index(drop=True)
