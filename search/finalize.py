"""finalize_run: train the chosen trial on train+validation, test it once, export it, and write
everything the report shows into the run folder, so that the renderer needs nothing else."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from search.config import SearchConfig
from search.data import load_data
from search.errors import HyperCNNError
from search.export import export_model
from search.plan import DefaultGuard, not_beating_default
from search.ranking import is_ranked
from search.report import compute
from search.retrain import (
    EXPORT_CHECK_IMAGES,
    Retrained,
    best_trial,
    final_candidates,
    final_training_seconds,
    retrain_best,
)
from search.run import build_tuner
from search.runfolder import RunFolder, trials_table, write_csv, write_json
from spaces.inference import inference_model

# The figures' images: a few per class for the sample grid, and the most confident mistakes.
SAMPLES_PER_CLASS = 4
MISTAKES_SHOWN = 24


@dataclasses.dataclass
class Finalized:
    run: RunFolder
    test_accuracy: float
    trial_id: str


def _reuse_model(run: RunFolder, trial_id: str, epochs: int) -> Retrained | None:
    """A model already exported for this same trial is reused: finalizing again costs no retrain."""
    if not (run.model_file.is_file() and run.model_json.is_file() and run.model_history.is_file()):
        return None
    described = json.loads(run.model_json.read_text())
    if described.get("trial_id") != trial_id or described.get("best_epoch") != epochs:
        return None
    print(f"reusing {run.model_file} (trial {trial_id} is still the choice; --retrain forces a new one)")
    history = json.loads(run.model_history.read_text())
    model = keras.models.load_model(run.model_file, safe_mode=True)
    return Retrained(
        model, history, 0.0, len(history["epoch"]), batch_norm_images=described.get("batch_norm_images", 0)
    )


def search_history(run: RunFolder, trial_ids: list[str]) -> dict[str, dict]:
    """Every trial's per-epoch scores and timing, out of tuner/ (which a copied run may leave behind)."""
    kept = ("epochs_trained", "best_epoch", "seconds", "finished_at", "status_note", "continued_from")
    history = {}
    for trial_id in trial_ids:
        record = run.read_trial_record(trial_id)
        history[trial_id] = {key: record.get(key) for key in kept} | {"history": record.get("history", {})}
    return history


def job_plan(run: RunFolder) -> dict:
    """The budget plan `hypercnn run` wrote to job.json; empty for a search run on its own."""
    if not run.job_json.is_file():
        return {}
    return json.loads(run.job_json.read_text()).get("plan") or {}


def budget_pick_reason(run: RunFolder) -> str:
    """Why the plan's budget pick is trained, whatever its one short trial scored."""
    plan = job_plan(run)
    name = f"'{plan['pick']}'" if plan.get("pick") else "its configuration"
    return (
        f"the plan's budget pick: the budget fits too few epochs to search, and at this budget {name} "
        "trained better than the default on the portfolio bench"
    )


def only_trial_reason(run: RunFolder) -> str:
    """Why the one finished trial is trained: not the best of a search, since there was none."""
    reason = job_plan(run).get("reason")
    if not reason:
        return "the only finished trial (nothing else was searched)"
    return f"the only finished trial: {reason}"


def finalize_run(run_dir: str | Path, retrain: bool = False, time_budget_s: float | None = None) -> Finalized:
    started = time.time()
    run = RunFolder(run_dir)
    run.check_format()
    config = SearchConfig.load(run.path)
    if not run.env.is_file():
        raise HyperCNNError(f"{run.path} has no env.json; run 'hypercnn search' for it first")
    env = json.loads(run.env.read_text())
    loaded = load_data(config)
    if loaded.sha256 != env["data"]["sha256"]:
        raise HyperCNNError(
            f"the data at {config.data} changed since the search (sha256 differs); finalize on the "
            "data the search used, or search again with --overwrite"
        )
    splits = loaded.splits
    tuner = build_tuner(config, loaded, overwrite=False)
    trials = trials_table(tuner.oracle.trials, run, config.objective, tuner.oracle.proposals)
    write_csv(run.trials_csv, trials)
    top = tuner.best_trial()
    # Counted from the oracle's statuses once: final_candidates would read every trial's record again.
    ranked_trials = sum(is_ranked(t.status, t.score) for t in tuner.oracle.trials.values())
    # Read once: a diverged final training changes no trial's record, only which trials remain.
    all_candidates = final_candidates(tuner)
    guard = DefaultGuard.for_search(len(splits.y_val), config.max_epochs)
    diverged: tuple[str, ...] = ()
    while True:
        final_s = None
        if time_budget_s is not None:
            left = time_budget_s - (time.time() - started)
            final_s = final_training_seconds(left)
        candidates = [c for c in all_candidates if c.trial_id not in diverged]
        best = best_trial(
            tuner,
            final_s,
            len(splits.y_train) + len(splits.y_val),
            diverged,
            candidates=candidates,
            guard=guard,
        )
        chosen_because = "the best score of the search"
        passed_over = not_beating_default(candidates, guard)
        if diverged:
            chosen_because = f"the next candidate: the final training of {', '.join(diverged)} diverged"
        elif tuner.oracle.proposals.get(best.trial_id) == "budget":
            chosen_because = budget_pick_reason(run)
            if top is not None and top.trial_id != best.trial_id:
                print(f"training trial {best.trial_id}, not the top-ranked {top.trial_id}: {chosen_because}")
        elif ranked_trials == 1:
            chosen_because = only_trial_reason(run)
        elif top is not None and top.trial_id in passed_over:
            chosen_because = (
                f"the top-ranked {top.trial_id} did not beat the default configuration by more than the "
                f"noise of {guard.validation_images:,} validation images at equal epochs, or was not trained "
                f"{guard.min_epochs} epochs or more in the search, so "
                + (
                    "the default is trained"
                    if any(c.default and c.trial_id == best.trial_id for c in candidates)
                    else "the best trial that did"
                )
            )
            print(f"training trial {best.trial_id}, not the top-ranked {top.trial_id}: {chosen_because}")
        elif top is not None and top.trial_id != best.trial_id:
            chosen_because = (
                f"expected to score best after {final_s / 60:.1f} min of final training, from each trial's "
                f"measured pace and the epochs it was scored at (the top-ranked is {top.trial_id})"
            )
            print(f"training trial {best.trial_id}, not the top-ranked {top.trial_id}: {chosen_because}")

        retrained = None if retrain or diverged else _reuse_model(run, best.trial_id, best.epochs)
        fresh = retrained is None
        if not fresh:
            break
        # The budget covers the whole finalize step: what loading took so far is already spent.
        left = None if time_budget_s is None else time_budget_s - (time.time() - started)
        retrained = retrain_best(config, tuner, splits, best, left)
        if not retrained.diverged:
            break
        diverged += (best.trial_id,)
        print(
            f"the final training of trial {best.trial_id} diverged (its loss became NaN or infinite) after "
            f"{len(retrained.history['epoch'])} epoch(s); training the next candidate instead",
            flush=True,
        )
    flip_averaged = config.flip_averaging and bool(best.values.get("augment_flip", False))
    if fresh:
        write_json(run.model_history, retrained.history)
        # Mirror averaging only where the winner learned that mirrors are the same class.
        retrained.model = inference_model(retrained.model, flip_averaged)
    probabilities = retrained.model.predict(splits.x_test, batch_size=256, verbose=0)
    metrics = compute.test_metrics(splits.y_test, probabilities, splits.class_names)
    metrics.update(
        best_trial=best.trial_id,
        top_trial=top.trial_id if top is not None else best.trial_id,
        chosen_because=chosen_because,
        best_val_accuracy=best.val_accuracy,
        retrain_epochs=retrained.epochs,
        retrain_epochs_run=len(retrained.history.get("epoch", [])),
        best_epoch=best.epochs,
        retrain_seconds=round(retrained.seconds, 1),
        test_origin=splits.test_origin,
        trials_at_finalize=len(trials),
        diverged_final_trainings=list(diverged),
        batch_norm_images=retrained.batch_norm_images,
    )
    # A model exported by an earlier HyperCNN (run format 1) has best.keras only: export the rest.
    if fresh or "formats" not in json.loads(run.model_json.read_text()):
        on_tensorflow = keras.backend.backend() == "tensorflow"
        others = ", saved_model/, two .tflite files, model.onnx" if on_tensorflow else ""
        print(f"exporting the model: best.keras{others}", flush=True)
        export_model(
            retrained.model,
            run,
            splits.x_test[:EXPORT_CHECK_IMAGES],
            probabilities[:EXPORT_CHECK_IMAGES],
            {
                "classes": splits.class_names,
                "space": config.space,
                "trial_id": best.trial_id,
                "epochs": retrained.epochs,
                "best_epoch": best.epochs,
                "batch_norm_images": retrained.batch_norm_images,
                "val_accuracy": best.val_accuracy,
                "test_accuracy": metrics["test_accuracy"],
                "test_images": metrics["test_images"],
                "test_origin": splits.test_origin,
                "hyperparameters": best.values,
                "flip_averaged": flip_averaged,
                "data_sha256": loaded.sha256,
            },
        )
    write_csv(run.leaderboard_csv, compute.leaderboard(trials, tuner.objective))
    write_json(run.search_history, search_history(run, list(trials["trial_id"])))
    np.savez_compressed(
        run.predictions,
        y_true=splits.y_test.astype(np.int16),
        probabilities=probabilities.astype(np.float32),
    )
    samples = compute.sample_indices(splits.y_test, len(splits.class_names), SAMPLES_PER_CLASS, config.seed)
    mistakes = compute.confident_mistakes(splits.y_test, probabilities, MISTAKES_SHOWN)
    np.savez_compressed(
        run.gallery,
        sample_indices=samples,
        sample_images=splits.x_test[samples],
        mistake_indices=mistakes,
        mistake_images=splits.x_test[mistakes],
    )
    metrics["finalize_seconds"] = round(time.time() - started, 1)
    # Last: its presence says the files above are complete and belong together.
    write_json(run.metrics_json, metrics)
    run.write_format()
    print(
        f"test accuracy {100 * metrics['test_accuracy']:.2f}% on {metrics['test_images']} test images "
        f"(trial {best.trial_id}, validation {100 * best.val_accuracy:.2f}%)",
        flush=True,
    )
    return Finalized(run, metrics["test_accuracy"], best.trial_id)
