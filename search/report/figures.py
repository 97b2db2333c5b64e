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
    """Accuracy and loss per epoch: the chosen trial during search (with its Hyperband ancestors),
    and the final training."""
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
    """Counts, and each row normalised to the true class's images (recall on the diagonal)."""
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    size = 0.5 * len(class_names) + 2.5
    figure = Figure(figsize=(2 * size + 1, size))
    labels = [literal(n) for n in class_names]
    for axis, values, title, fmt in zip(
        figure.subplots(1, 2),
        (counts, normalised),
        ("counts", "share of each true class"),
        ("d", ".2f"),
        strict=True,
    ):
        ConfusionMatrixDisplay(values, display_labels=labels).plot(
            ax=axis, cmap="Blues", colorbar=False, xticks_rotation=45, values_format=fmt
        )
        axis.set_title(f"test split: {title}")
    figure.set_layout_engine("tight")
    return to_png(figure)


def hyperband_figure(
    trials: pd.DataFrame, history: dict[str, dict], progress: pd.DataFrame, objective_name: str
) -> bytes:
    """Left: every trial's validation accuracy against its epochs, one colour per Hyperband bracket;
    a dotted line joins a promoted trial to the parent it continued from. Right: the best score so
    far against wall-clock minutes, every finished trial a dot."""
    figure = Figure(figsize=(11, 3.8))
    curves_axis, time_axis = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    brackets = sorted(trials["bracket"].dropna().unique().tolist()) if "bracket" in trials else []
    palette = ["#0969da", "#bf8700", "#8250df", "#1a7f37", "#cf222e", "#57606a"]
    colour = {b: palette[i % len(palette)] for i, b in enumerate(brackets)}
    last_point: dict[str, tuple[float, float]] = {}
    for row in trials.itertuples():
        curve = history.get(str(row.trial_id), {}).get("history", {})
        epochs, scores = curve.get("epoch", []), curve.get("val_accuracy", [])
        if not scores:
            continue
        line_colour = colour.get(row.bracket, "#57606a")
        curves_axis.plot(epochs, scores, "-o", ms=4, lw=1.2, alpha=0.75, color=line_colour)
        parent = None if pd.isna(row.parent_trial) else str(row.parent_trial).zfill(len(str(row.trial_id)))
        if parent in last_point:
            px, py = last_point[parent]
            curves_axis.plot([px, epochs[0]], [py, scores[0]], ":", lw=1, color=line_colour, alpha=0.9)
        last_point[str(row.trial_id)] = (epochs[-1], scores[-1])
    for bracket in brackets:
        curves_axis.plot([], [], "-", color=colour[bracket], label=f"bracket {int(bracket)}")
    if brackets:
        curves_axis.legend(fontsize=8, loc="lower right")
    curves_axis.set_xlabel("epoch (dotted: promoted, training continued)")
    curves_axis.set_ylabel("validation accuracy")
    curves_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves_axis.grid(alpha=0.3)
    if len(progress):
        time_axis.scatter(progress["minutes"], progress["score"], s=14, color="#57606a", alpha=0.6)
        time_axis.step(
            progress["minutes"], progress["best"], where="post", color="#cf222e", label="best so far"
        )
        time_axis.legend(fontsize=8, loc="lower right")
    time_axis.set_xlabel("minutes since the search started")
    time_axis.set_ylabel(literal(objective_name))
    time_axis.grid(alpha=0.3)
    figure.set_layout_engine("tight")
    return to_png(figure)


def importance_figure(importance: pd.DataFrame) -> bytes:
    shown = importance.head(12).iloc[::-1]
    figure = Figure(figsize=(7, 0.35 * len(shown) + 1.2))
    axis = figure.subplots()
    axis.barh(
        [literal(n) for n in shown["hyperparameter"]],
        shown["importance"],
        xerr=shown["spread"],
        color="#0969da",
        alpha=0.85,
    )
    axis.set_xlabel("drop in the forest's R\u00b2 when the column is shuffled (permutation importance)")
    axis.grid(axis="x", alpha=0.3)
    figure.set_layout_engine("tight")
    return to_png(figure)


def effect_figure(trials: pd.DataFrame, names: list[str], score_column: str, objective_name: str) -> bytes:
    """The score against each of the given hyper-parameters, one panel each, every ranked trial a dot
    sized by its epochs."""
    figure = Figure(figsize=(5 * len(names), 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(names)))
    for axis, name in zip(axes, names, strict=True):
        column = trials[name]
        numeric = pd.to_numeric(column, errors="coerce")
        sizes = 12 + 10 * trials["epochs"].fillna(1).astype(float)
        if numeric.notna().sum() == column.notna().sum() and column.dtype != bool and numeric.nunique() > 4:
            axis.scatter(numeric, trials[score_column], s=sizes, alpha=0.6, color="#0969da")
            positive = numeric[numeric > 0]
            if len(positive) == numeric.notna().sum() and positive.max() / positive.min() > 100:
                axis.set_xscale("log")
        else:
            categories = sorted(column.astype(str).unique())
            position = {c: i for i, c in enumerate(categories)}
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(column))
            axis.scatter(
                [position[c] + j for c, j in zip(column.astype(str), jitter, strict=True)],
                trials[score_column],
                s=sizes,
                alpha=0.6,
                color="#0969da",
            )
            axis.set_xticks(range(len(categories)), [literal(c) for c in categories])
        axis.set_xlabel(literal(name))
        axis.set_ylabel(literal(objective_name))
        axis.grid(alpha=0.3)
    figure.set_layout_engine("tight")
    return to_png(figure)


def image_png(image: np.ndarray) -> bytes:
    """One small image as PNG; the page scales it up without smoothing."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
