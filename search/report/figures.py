"""The report's pictures: matplotlib figures from the numbers in compute.py, returned as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

# Figure objects, not pyplot: no display backend needed, none changed for the caller (notebooks).
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

CORRECT, WRONG = "#1a7f37", "#cf222e"


def literal(text: object) -> str:
    """Text from the data (a class name like `$\\x$`) shown as written: matplotlib would parse a pair
    of dollar signs as math text, and fail on what is not valid math."""
    return str(text).replace("$", r"\$")


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def sample_grid_figure(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    predicted: np.ndarray | None = None,
    per_class: int = 4,
    seed: int = 0,
) -> bytes:
    """A few images of every class, one column per class; with predictions, wrong ones in red."""
    rng = np.random.default_rng(seed)
    columns = len(class_names)
    figure = Figure(figsize=(1.25 * columns, 1.4 * per_class + 0.3))
    axes = figure.subplots(per_class, columns, squeeze=False)
    class_names = [literal(name) for name in class_names]
    for column, name in enumerate(class_names):
        indices = np.flatnonzero(labels == column)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False) if len(indices) else []
        for row in range(per_class):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if row >= len(chosen):
                axis.axis("off")
                continue
            index = chosen[row]
            axis.imshow(images[index], interpolation="nearest")
            if row == 0:
                axis.set_title(name, fontsize=9, fontweight="bold")
            if predicted is not None:
                ok = predicted[index] == labels[index]
                axis.set_xlabel(class_names[predicted[index]], fontsize=7, color=CORRECT if ok else WRONG)
                for spine in axis.spines.values():
                    spine.set_edgecolor(CORRECT if ok else WRONG)
                    spine.set_linewidth(2)
    figure.set_layout_engine("tight")
    return to_png(figure)


def curves_figure(search: dict[str, list[float]], retrain: dict[str, list[float]], trial_id: str) -> bytes:
    """Accuracy and loss per epoch: the best trial during search, and the final retrain."""
    figure = Figure(figsize=(10, 3.6))
    acc_axis, loss_axis = figure.subplots(1, 2)
    series = [
        (search, "accuracy", f"trial {trial_id} train", "-", "#0969da"),
        (search, "val_accuracy", f"trial {trial_id} validation", "-", "#bf8700"),
        (retrain, "accuracy", "final retrain (train+validation)", "--", "#8250df"),
    ]
    for axis, metric in ((acc_axis, "accuracy"), (loss_axis, "loss")):
        for curves, name, label, style, color in series:
            key = name.replace("accuracy", metric)
            if curves.get(key):
                epochs = curves.get("epoch") or list(range(1, len(curves[key]) + 1))
                axis.plot(
                    epochs[: len(curves[key])], curves[key], style, marker="o", ms=3, label=label, color=color
                )
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    acc_axis.legend(fontsize=8)
    acc_axis.set_title("accuracy")
    loss_axis.set_title("loss")
    figure.set_layout_engine("tight")
    return to_png(figure)


def confusion_matrix_figure(matrix: list[list[int]], class_names: list[str]) -> bytes:
    figure = Figure(figsize=(0.55 * len(class_names) + 3, 0.55 * len(class_names) + 2.5))
    axis = figure.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=[literal(n) for n in class_names]).plot(
        ax=axis, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    axis.set_title("test split: true vs predicted")
    figure.set_layout_engine("tight")
    return to_png(figure)


def search_progress_figure(trials: pd.DataFrame) -> bytes:
    """Every trial's validation accuracy in launch order, sized by its epoch budget."""
    figure = Figure(figsize=(10, 3.2))
    axis = figure.subplots()
    done = trials[trials["val_accuracy"].notna()]
    order = {tid: i for i, tid in enumerate(trials["trial_id"])}
    x = [order[t] for t in done["trial_id"]]
    epochs = done["epochs"].fillna(1).astype(float)
    scatter = axis.scatter(x, done["val_accuracy"], s=20 + 25 * epochs, c=epochs, cmap="viridis", alpha=0.8)
    if len(done):
        best_so_far = done["val_accuracy"].cummax()
        axis.step(x, best_so_far, where="post", color="#cf222e", label="best so far")
        axis.legend(fontsize=8, loc="lower right")
        figure.colorbar(scatter, ax=axis, label="epochs")
    failed = trials[trials["val_accuracy"].isna()]
    for tid in failed["trial_id"]:
        axis.axvline(order[tid], color="#cf222e", alpha=0.3, ls=":")
    axis.set_xlabel("trial (launch order; dotted = failed)")
    axis.set_ylabel("validation accuracy")
    axis.grid(alpha=0.3)
    figure.set_layout_engine("tight")
    return to_png(figure)
