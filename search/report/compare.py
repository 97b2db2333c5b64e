"""compare_runs: one self-contained page with finalized runs side by side (from their folders alone)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from search.errors import HyperCNNError
from search.report import compute, figures
from search.report.artifacts import RunArtifacts, load_artifacts
from search.report.render import budget_summary, encode, environment


def run_column(artifacts: RunArtifacts) -> dict[str, Any]:
    metrics, env = artifacts.metrics, artifacts.env
    budget = budget_summary(artifacts)
    keras_file = artifacts.model.get("formats", {}).get("keras", {})
    return {
        "name": artifacts.run.path.name,
        "path": str(artifacts.run.path),
        "rows": {
            "test accuracy": f"{100 * metrics['test_accuracy']:.2f}%",
            "95% interval": "{:.2f}% to {:.2f}%".format(*(100 * v for v in metrics["test_accuracy_ci95"])),
            "test images": metrics["test_images"],
            "macro F1": f"{metrics['macro_f1']:.3f}",
            "validation accuracy": f"{100 * metrics['best_val_accuracy']:.2f}%",
            "trained trial": metrics["best_trial"],
            "final epochs": metrics.get("retrain_epochs_run", metrics["retrain_epochs"]),
            "trials": len(artifacts.trials),
            "search minutes": f"{budget['search_seconds'] / 60:.1f}",
            "run budget": f"{budget['budget_s'] / 60:.1f} min" if budget.get("budget_s") else "none",
            "space": artifacts.config.space,
            "sampler": artifacts.config.sampler,
            "objective": artifacts.objective.name,
            "data": env["data"]["kind"],
            "data sha256": env["data"]["sha256"][:16] + "…",
            "split sizes": " / ".join(str(v) for v in env["data"]["split_sizes"].values()),
            "hardware": f"{env['hardware']['cpu']} ({env['hardware']['cpu_cores']} cores)",
            "GPUs": ", ".join(env["hardware"].get("gpus") or []) or "none",
            "precision": env["hardware"]["precision"],
            "model size": f"{keras_file['bytes'] / 1e6:.2f} MB" if "bytes" in keras_file else "",
            "keras / tensorflow": f"{env['packages'].get('keras')} / {env['packages'].get('tensorflow')}",
        },
    }


def progress_figure(runs: list[RunArtifacts]) -> bytes:
    figure = Figure(figsize=(10, 3.4))
    axis = figure.subplots()
    for artifacts in runs:
        progress = compute.best_so_far_over_time(artifacts.trials, artifacts.objective)
        if len(progress):
            axis.step(
                progress["minutes"],
                progress["best"],
                where="post",
                label=figures.literal(artifacts.run.path.name),
            )
    axis.set_xlabel("minutes since the search started")
    axis.set_ylabel("best score so far")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.set_layout_engine("tight")
    return figures.to_png(figure)


def per_class_figure(runs: list[RunArtifacts]) -> bytes | None:
    classes = runs[0].class_names
    if any(r.class_names != classes for r in runs):
        return None
    figure = Figure(figsize=(max(8, 0.9 * len(classes) * len(runs) / 2 + 4), 3.6))
    axis = figure.subplots()
    width = 0.8 / len(runs)
    positions = np.arange(len(classes))
    for i, artifacts in enumerate(runs):
        f1 = [artifacts.metrics["per_class"][name]["f1"] for name in classes]
        axis.bar(positions + i * width, f1, width, label=figures.literal(artifacts.run.path.name))
    axis.set_xticks(
        positions + width * (len(runs) - 1) / 2,
        [figures.literal(c) for c in classes],
        rotation=30,
        ha="right",
    )
    axis.set_ylabel("F1 (test split)")
    axis.set_ylim(0, 1)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.set_layout_engine("tight")
    return figures.to_png(figure)


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    if len(run_dirs) < 2:
        raise HyperCNNError("compare needs at least two run folders")
    runs = [load_artifacts(run_dir) for run_dir in run_dirs]
    columns = [run_column(artifacts) for artifacts in runs]
    pictures = {"progress": progress_figure(runs)}
    per_class = per_class_figure(runs)
    if per_class is not None:
        pictures["per_class"] = per_class
    html = (
        environment()
        .get_template("compare.html")
        .render(
            columns=columns,
            row_names=list(columns[0]["rows"]),
            figures={name: encode(png) for name, png in pictures.items()},
            same_data=len({r.env["data"]["sha256"] for r in runs}) == 1,
            generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        )
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
