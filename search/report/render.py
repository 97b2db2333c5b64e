"""render_run: report/index.html from a finalized run folder alone; one self-contained page (images
inline, a few lines of script for sorting, no network)."""

from __future__ import annotations

import base64
import datetime
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from search.report import compute, figures
from search.report.artifacts import RunArtifacts, load_artifacts

LEADERBOARD_META = ["rank", "trial_id", "status", "proposal", "bracket", "round", "parent_trial"]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return (
            f"{value:.4g}"
            if abs(value) < 1e-2 or abs(value) >= 1e4
            else f"{value:.4f}".rstrip("0").rstrip(".")
        )
    return str(value)


def _sort_value(value: Any) -> str:
    """What a leaderboard cell sorts by: the number itself, else the text (empty cells last)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def environment() -> jinja2.Environment:
    # Autoescape: every string from the data or config (class names, paths) is shown as text.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("search.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = _cell
    env.filters["sortvalue"] = _sort_value
    env.filters["pct"] = lambda v: f"{100 * v:.2f}%"
    return env


def encode(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def leaderboard_rows(artifacts: RunArtifacts) -> tuple[list[str], list[dict[str, Any]]]:
    board = artifacts.leaderboard
    objective = artifacts.objective.name
    hyper = compute.hyperparameter_columns(board)
    columns = [
        *[c for c in LEADERBOARD_META if c in board],
        *dict.fromkeys([objective, "val_accuracy", "val_loss"]),
        "epochs",
        "best_epoch",
        "seconds",
        *hyper,
        "reason",
    ]
    rows = []
    for record in board.to_dict("records"):
        status = str(record.get("status"))
        reason = record.get("error") if isinstance(record.get("error"), str) else ""
        if status == "CUT_BY_BUDGET":
            reason = f"cut by the time budget after {_cell(record.get('epochs_trained'))} epoch(s)"
        record["reason"] = reason
        record["kind"] = (
            "cut" if status == "CUT_BY_BUDGET" else "failed" if pd.isna(record.get("rank")) else "ranked"
        )
        rows.append(record)
    return [c for c in columns if c == "reason" or c in board], rows


def budget_summary(artifacts: RunArtifacts) -> dict[str, Any]:
    """What the run's time went to: the job's budget and its split when hypercnn run made it, else
    the search's and the finalize step's own seconds."""
    search_seconds = float(artifacts.trials["seconds"].fillna(0).sum()) if len(artifacts.trials) else 0.0
    summary: dict[str, Any] = {
        "search_seconds": search_seconds,
        "final_seconds": artifacts.metrics.get("finalize_seconds"),
        "retrain_seconds": artifacts.metrics.get("retrain_seconds"),
    }
    if artifacts.job:
        summary.update(
            budget_s=artifacts.job.get("time_budget_s"),
            spent_s=artifacts.job.get("spent_s"),
            plan=artifacts.job.get("plan"),
            invocations=len(artifacts.job.get("invocations", [])),
        )
    return summary


def page_context(artifacts: RunArtifacts) -> dict[str, Any]:
    metrics, trials = artifacts.metrics, artifacts.trials
    names = artifacts.class_names
    predicted = artifacts.probabilities.argmax(axis=1)
    gallery = artifacts.gallery
    samples = gallery["sample_indices"]
    pictures = {
        "samples": figures.sample_grid_figure(
            gallery["sample_images"],
            artifacts.y_true[samples],
            names,
            predicted[samples],
            per_class=max(1, int(pd.Series(artifacts.y_true[samples]).value_counts().max())),
            seed=artifacts.config.seed,
        ),
        "curves": figures.curves_figure(
            compute.trial_chain_curves(artifacts.history, trials, metrics["best_trial"]),
            artifacts.final_history,
            metrics["best_trial"],
        ),
        "confusion": figures.confusion_matrix_figure(metrics["confusion_matrix"], names),
        "hyperband": figures.hyperband_figure(
            trials,
            artifacts.history,
            compute.best_so_far_over_time(trials, artifacts.objective),
            artifacts.objective.name,
        ),
    }
    importance = compute.hyperparameter_importance(trials, artifacts.objective, artifacts.config.seed)
    if importance is not None:
        pictures["importance"] = figures.importance_figure(importance)
        top_two = [n for n in importance["hyperparameter"] if n != "epochs"][:2]
        ranked = artifacts.leaderboard[artifacts.leaderboard["rank"].notna()]
        score_column = "score" if "score" in ranked else artifacts.objective.name
        pictures["effects"] = figures.effect_figure(ranked, top_two, score_column, artifacts.objective.name)
    mistakes = [
        {
            "image": encode(figures.image_png(image)),
            "index": int(index),
            "true": names[artifacts.y_true[index]],
            "predicted": names[predicted[index]],
            "probability": float(artifacts.probabilities[index, predicted[index]]),
        }
        for index, image in zip(gallery["mistake_indices"], gallery["mistake_images"], strict=True)
    ]
    columns, rows = leaderboard_rows(artifacts)
    return {
        "run_name": artifacts.run.path.name,
        "config": artifacts.config,
        "env": artifacts.env,
        "data": artifacts.env["data"],
        "metrics": metrics,
        "model": artifacts.model,
        "budget": budget_summary(artifacts),
        "summary": compute.search_summary(trials),
        "objective": artifacts.objective.name,
        "leaderboard_columns": columns,
        "leaderboard_rows": rows,
        "per_class": compute.per_class_table(metrics).to_dict("records"),
        "importance": None if importance is None else importance.to_dict("records"),
        "mistakes": mistakes,
        "best_values": artifacts.model.get("hyperparameters", {}),
        "formats": artifacts.model.get("formats", {}),
        "test_origin_text": (
            "the data's own test split"
            if metrics.get("test_origin") == "source"
            else "held out of the training data"
        ),
        "figures": {name: encode(png) for name, png in pictures.items()},
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def render_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the page for a finalized run folder (default: RUN/report/index.html) and return its path."""
    artifacts = load_artifacts(run_dir)
    html = environment().get_template("report.html").render(**page_context(artifacts))
    path = Path(out) if out else artifacts.run.html
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path
