"""make_report: retrain the best trial, test it once, export it, and write report/index.html."""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path

import keras

from search.config import SearchConfig
from search.data import load_data
from search.errors import HyperCNNError
from search.export import export_model
from search.report import compute, figures
from search.report.render import render_report
from search.retrain import (
    AFTER_TRAINING_SECONDS,
    RETRAIN_BUDGET_MARGIN,
    Retrained,
    best_trial,
    retrain_best,
)
from search.run import build_tuner
from search.runfolder import RunFolder, trials_table, write_csv, write_json
from spaces.inference import inference_model

LEADERBOARD_ROWS = 15


@dataclasses.dataclass
class ReportResult:
    html: Path
    model: Path
    test_accuracy: float
    best_trial: str


def _reuse_model(run: RunFolder, trial_id: str, epochs: int) -> Retrained | None:
    """A model already exported for this same best trial is reused: re-rendering costs no retrain."""
    history_file = run.model_dir / "history.json"
    if not (run.model_file.is_file() and run.model_json.is_file() and history_file.is_file()):
        return None
    described = json.loads(run.model_json.read_text())
    if described.get("trial_id") != trial_id or described.get("best_epoch") != epochs:
        return None
    print(f"reusing {run.model_file} (trial {trial_id} is still the best; --retrain forces a new one)")
    history = json.loads(history_file.read_text())
    return Retrained(keras.models.load_model(run.model_file), history, 0.0, len(history["epoch"]))


def make_report(
    run_dir: str | Path, retrain: bool = False, time_budget_s: float | None = None
) -> ReportResult:
    started = time.time()
    run = RunFolder(run_dir)
    config = SearchConfig.load(run.path)
    if not run.env.is_file():
        raise HyperCNNError(f"{run.path} has no env.json; run 'hypercnn search' for it first")
    env = json.loads(run.env.read_text())
    loaded = load_data(config)
    if loaded.sha256 != env["data"]["sha256"]:
        raise HyperCNNError(
            f"the data at {config.data} changed since the search (sha256 differs); report on the "
            "data the search used, or search again with --overwrite"
        )
    splits = loaded.splits
    tuner = build_tuner(config, loaded, overwrite=False)
    trials = trials_table(tuner.oracle.trials, run, config.objective, tuner.oracle.proposals)
    write_csv(run.trials_csv, trials)
    final_s = None
    if time_budget_s is not None:
        left = time_budget_s - (time.time() - started)
        final_s = max(1.0, RETRAIN_BUDGET_MARGIN * left - AFTER_TRAINING_SECONDS)
    best = best_trial(tuner, final_s, len(splits.y_train) + len(splits.y_val))
    top = tuner.best_trial()
    if top is not None and top.trial_id != best.trial_id:
        print(
            f"training trial {best.trial_id}, not the top-scoring trial {top.trial_id}: at their measured "
            f"paces it is expected to score best after {final_s / 60:.1f} min of final training",
            flush=True,
        )

    retrained = None if retrain else _reuse_model(run, best.trial_id, best.epochs)
    fresh = retrained is None
    if fresh:
        # The budget covers the whole report: what loading took so far is already spent.
        left = None if time_budget_s is None else time_budget_s - (time.time() - started)
        retrained = retrain_best(config, tuner, splits, best, left)
        write_json(run.model_dir / "history.json", retrained.history)
        # Mirror averaging only where the winner learned that mirrors are the same class.
        flip_averaged = config.flip_averaging and bool(best.values.get("augment_flip", False))
        retrained.model = inference_model(retrained.model, flip_averaged)
    probabilities = retrained.model.predict(splits.x_test, batch_size=256, verbose=0)
    metrics = compute.test_metrics(splits.y_test, probabilities, splits.class_names)
    metrics.update(
        best_trial=best.trial_id,
        best_val_accuracy=best.val_accuracy,
        retrain_epochs=retrained.epochs,
        best_epoch=best.epochs,
        retrain_seconds=round(retrained.seconds, 1),
        test_origin=splits.test_origin,
    )
    if fresh:
        model_description = export_model(
            retrained.model,
            run,
            splits.x_test,
            probabilities,
            {
                "classes": splits.class_names,
                "space": config.space,
                "trial_id": best.trial_id,
                "epochs": retrained.epochs,
                "best_epoch": best.epochs,
                "val_accuracy": best.val_accuracy,
                "test_accuracy": metrics["test_accuracy"],
                "test_images": metrics["test_images"],
                "test_origin": splits.test_origin,
                "hyperparameters": best.values,
                "flip_averaged": flip_averaged,
                "data_sha256": loaded.sha256,
            },
        )
    else:
        model_description = json.loads(run.model_json.read_text())

    ranked = compute.leaderboard(trials, config.objective, tuner.objective.direction == "max")
    write_csv(run.report_dir / "leaderboard.csv", ranked)
    write_json(run.report_dir / "metrics.json", metrics)
    pictures = {
        "samples": figures.sample_grid_figure(
            splits.x_test, splits.y_test, splits.class_names, probabilities.argmax(1), seed=config.seed
        ),
        "curves": figures.curves_figure(
            compute.trial_curves(run, trials, best.trial_id), retrained.history, best.trial_id
        ),
        "confusion": figures.confusion_matrix_figure(metrics["confusion_matrix"], splits.class_names),
        "progress": figures.search_progress_figure(trials),
    }
    columns = [
        "rank",
        "trial_id",
        "status",
        "proposal",
        *dict.fromkeys((config.objective, "val_accuracy", "val_loss")),
        "epochs",
        "best_epoch",
        "seconds",
        *compute.hyperparameter_columns(trials),
    ]
    html = render_report(
        run.report_dir / "index.html",
        pictures,
        run_name=run.path.name,
        config=config,
        env=env,
        data=env["data"],
        metrics=metrics,
        summary=compute.search_summary(trials),
        leaderboard_columns=columns,
        leaderboard_rows=ranked.head(LEADERBOARD_ROWS).to_dict("records"),
        per_class=compute.per_class_table(metrics).to_dict("records"),
        best_values=best.values,
        model=model_description,
        model_path=str(run.model_file),
        test_origin_text=_test_origin_text(splits.test_origin),
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    print(
        f"test accuracy {100 * metrics['test_accuracy']:.2f}% on {metrics['test_images']} test images "
        f"(best trial {best.trial_id}, validation {100 * best.val_accuracy:.2f}%)\n"
        f"report: {html}\nmodel:  {run.model_file}",
        flush=True,
    )
    return ReportResult(html, run.model_file, metrics["test_accuracy"], best.trial_id)


def _test_origin_text(origin: str) -> str:
    return "the data's own test split" if origin == "source" else "held out of the training data"


__all__ = ["ReportResult", "make_report"]
