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
from search.plan import NO_GUARD, Candidate, DefaultGuard, choose_final, configuration_of, seconds_per_image
from search.ranking import is_ranked
from search.run import build_hypermodel
from search.tuner import HyperCNNTuner, StopAtDeadline
from spaces.batch_stats import MAX_IMAGES as BATCH_STATS_IMAGES
from spaces.batch_stats import recompute_batch_norm_statistics
from spaces.recipe import set_schedule_steps


@dataclasses.dataclass
class BestTrial:
    trial_id: str
    # The objective's value (what the trial was ranked by) and the validation accuracy at that epoch.
    score: float
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
    epochs: int
    # The training loss went NaN or infinite (Keras's TerminateOnNaN stopped it): the weights are unusable.
    diverged: bool = False
    # Images the batch-norm statistics were recomputed on after training (0: the model has none).
    batch_norm_images: int = 0


def accuracy_when_scored(trial: kt.engine.trial.Trial, record: dict[str, Any], epochs: int) -> float:
    """The trial's validation accuracy at the epoch its score was taken (its record's history), or its
    best validation accuracy where the history does not say."""
    accuracies = record.get("history", {}).get("val_accuracy", [])
    epochs_seen = record.get("history", {}).get("epoch", [])
    if epochs in epochs_seen and len(accuracies) == len(epochs_seen):
        return float(accuracies[epochs_seen.index(epochs)])
    return float(trial.metrics.get_best_value("val_accuracy"))


def final_candidates(tuner: HyperCNNTuner) -> list[Candidate]:
    """Every trial with a score, as search.plan weighs them: score (higher is better), the epochs it
    had when scored, its measured pace, and whether it is the default configuration."""
    trials = tuner.oracle.trials
    candidates = []
    for trial in trials.values():
        if not is_ranked(trial.status, trial.score):
            continue
        record = tuner.run.read_trial_record(trial.trial_id)
        pace = seconds_per_image(record, tuner.config.batch_size)
        epochs = int(record.get("best_epoch") or trial.hyperparameters.values.get("tuner/epochs", 1))
        accuracy = (
            accuracy_when_scored(trial, record, epochs) if trial.metrics.exists("val_accuracy") else None
        )
        candidates.append(
            Candidate(
                trial_id=trial.trial_id,
                score=-tuner.objective.sort_key(float(trial.score)),
                epochs=epochs,
                seconds_per_image=pace or 0.0,
                parent=trial.hyperparameters.values.get("tuner/trial_id"),
                budget_pick=tuner.oracle.proposals.get(trial.trial_id) == "budget",
                accuracy=accuracy,
            )
        )
    # A promotion's configuration is its first ancestor's, the only one the oracle names a source for.
    by_id = {c.trial_id: c for c in candidates}
    return [
        dataclasses.replace(c, default=tuner.oracle.proposals.get(configuration_of(c, by_id)) == "default")
        for c in candidates
    ]


def best_trial(
    tuner: HyperCNNTuner,
    final_s: float | None = None,
    final_images: int = 0,
    exclude: tuple[str, ...] = (),
    candidates: list[Candidate] | None = None,
    guard: DefaultGuard = NO_GUARD,
) -> BestTrial:
    """The trial to train last: with `final_s`, the one expected to be best after a final training of
    that many seconds on `final_images` images (search.plan.choose_final); else the best score. Only
    trials that pass the `guard` (search.plan.DefaultGuard), while the default can be trained.
    `exclude`: trials whose final training already diverged. `candidates`: final_candidates(tuner),
    where the caller read them already (each is one read of a trial's record)."""
    if candidates is None:
        candidates = final_candidates(tuner)
    candidates = [c for c in candidates if c.trial_id not in exclude]
    chosen = choose_final(candidates, final_s, final_images, guard)
    if chosen is None and exclude:
        raise HyperCNNError(
            f"the final training diverged for every finished trial of {tuner.run.path} "
            f"({', '.join(exclude)}); search again with another --seed or a smaller --batch-size"
        )
    if chosen is None:
        raise HyperCNNError(
            f"{tuner.run.path} has no completed trial yet; run the search (longer) before the report"
        )
    trial = tuner.oracle.get_trial(chosen.trial_id)
    record = tuner.run.read_trial_record(trial.trial_id)
    # The epoch at which the objective peaked, counted from the start of training (final_candidates
    # read it from the same record).
    epochs = chosen.epochs
    val_accuracy = accuracy_when_scored(trial, record, epochs)
    return BestTrial(trial.trial_id, float(trial.score), val_accuracy, epochs, trial.hyperparameters)


# Bounds the plan where a budget fits hundreds of epochs: past 200, more epochs of the same model did
# not pay on the 45-minute bench (2 AVX512-BF16 cores, 10,000 + 2,000 images, 10,000 test images): the
# default trained 201 epochs scored 82.67 % (2a18982), 564 epochs 81.83 % (2a5839f, cap 600;
# results/bench_search_quality_bf16_2700*.csv). The job ends early instead.
MAX_RETRAIN_EPOCHS = 200


# What finalize does after training besides passes over the test images: the SavedModel, TFLite and
# ONNX conversions (about 15 s on 2 cores, the ONNX one in a fresh process), the files, the page.
AFTER_TRAINING_SECONDS = 35.0
# Passes after training, each about a third of a train step per image, each twice over with flip
# averaging (every image and its mirror): the evaluation over every test image, and five export
# checks (keras, SavedModel, two TFLite, ONNX) over at most EXPORT_CHECK_IMAGES of them.
TEST_PASSES = 2
EXPORT_CHECK_PASSES = 10
# The export checks compare each format's predictions with the Keras model's: a thousand images find
# a conversion bug as surely as ten thousand, and on 10,000 test images the checks of every image
# took about 75 s of a 5-minute job (2 AVX2 cores), time the final training can use instead.
EXPORT_CHECK_IMAGES = 1000
RETRAIN_BUDGET_MARGIN = 0.9
# With the final training's own epochs measured, the share of the budget its training may end by.
RETRAIN_DEADLINE_SHARE = 0.97


def final_training_seconds(budget_s: float, after_s: float = AFTER_TRAINING_SECONDS) -> float:
    """Seconds the final training trains for in `budget_s`, with `after_s` kept for testing, exports
    and the page: ScheduleToDeadline stretches its schedule to RETRAIN_DEADLINE_SHARE of the budget,
    whatever epochs RETRAIN_BUDGET_MARGIN planned. The trial choice weighs these seconds: weighed with
    the margin instead (2 AVX512-BF16 cores, 900 s, bench/search_quality.py at 7eaf4e6, model sampler,
    seed 0), the width-48 trial that won two of its three seeds fitted 29.7 of the 30 epochs the choice
    demands in 7.4 min and was passed over, while the twelve 900 s final trainings took 472-475 s."""
    return max(1.0, RETRAIN_DEADLINE_SHARE * budget_s - after_s)


def retrain_pace(record: dict[str, Any], train_images: int, test_images: int) -> tuple[float, float]:
    """(seconds per training image, seconds after training) from the chosen trial's record: its
    steady pace plus what each epoch costs besides its steps (callbacks, the input pipeline's epoch
    start: most of an epoch on tiny data); after training, its one-off build and tracing plus the
    test passes and the exports."""
    epochs_seen = record["epochs_trained"] * max(1, train_images)
    if record.get("train_seconds"):
        fixed = record.get("setup_seconds", 0.0) + record.get("trace_seconds", 0.0)
        per_epoch = max(0.0, record.get("overhead_seconds", 0.0) - fixed) / record["epochs_trained"]
        seconds_per_image = (record["train_seconds"] + per_epoch * record["epochs_trained"]) / epochs_seen
    else:  # a record from before per-step timing: its wall time errs on the safe side
        seconds_per_image, fixed = record["seconds"] / epochs_seen, 0.0
    # A 90 s job overran by 8 % when only two passes over the test images were counted.
    passes = TEST_PASSES * test_images + EXPORT_CHECK_PASSES * min(test_images, EXPORT_CHECK_IMAGES)
    after = AFTER_TRAINING_SECONDS + fixed + passes * seconds_per_image / 3
    # The batch-norm recalibration: an eager forward pass, about half a training step per image.
    after += min(BATCH_STATS_IMAGES, train_images) * seconds_per_image / 2
    return seconds_per_image, after


def retrain_epochs(
    best: BestTrial,
    record: dict[str, Any],
    images: int,
    train_images: int,
    test_images: int,
    budget_s: float | None,
) -> int:
    """Without a budget: the best epoch count. With one: as many epochs as the search's own pace
    says fit it after testing and export, fewer or more than the best count; the schedule is
    sized to them either way, so a longer budget anneals over a longer run instead of idling.
    The final training measures its own pace and ends its schedule at the deadline (ScheduleToDeadline)."""
    if budget_s is None or not record.get("epochs_trained"):
        return best.epochs
    seconds_per_image, after = retrain_pace(record, train_images, test_images)
    # A margin for a shared machine whose speed drifts by tens of percent.
    usable = RETRAIN_BUDGET_MARGIN * budget_s - after
    return max(1, min(MAX_RETRAIN_EPOCHS, int(usable / (seconds_per_image * images))))


class ScheduleToDeadline(keras.callbacks.Callback):
    """The final training's own clock: its learning-rate schedule ends at the deadline. From the
    second epoch on (the first also traces the step), after every call of the compiled step the
    measured seconds per step say how many steps fit before the deadline, and the schedule is
    stretched or shrunk to end there; training stops when it has. So the model is annealed however
    the pace drifts, and the last epoch may be partial rather than an epoch's time left unused. Measured
    once after epoch 2 instead (stop 24, 2 AVX2 cores), later epochs ran slower and the deadline cut a
    34-epoch schedule at epoch 29, unannealed; whole epochs left 50-80 s of a 5-minute job unused."""

    MEASURE_FROM_EPOCH = 1
    # Steps timed before the first correction: fewer measure a call's jitter, not the pace.
    MIN_TIMED_STEPS = 32

    def __init__(self, deadline: float, planned_epochs: int, upper_epochs: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.deadline = deadline
        self.upper_steps = upper_epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.min_timed_steps = min(self.MIN_TIMED_STEPS, steps_per_epoch)
        self.epoch = 0
        self.mark: tuple[float, int] | None = None  # (time, steps done) where timing started
        # The step the schedule now ends at: the plan's until the first measurement.
        self.ends_at = planned_epochs * steps_per_epoch
        self.steps_done = 0
        self.seconds_per_step: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        if epoch == min(self.MEASURE_FROM_EPOCH, self.upper_steps // self.steps_per_epoch - 1):
            self.mark = (time.time(), epoch * self.steps_per_epoch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Keras reports the last step of each call (several steps per call in long trainings).
        self.steps_done = self.epoch * self.steps_per_epoch + batch + 1
        if self.mark is not None and self.steps_done - self.mark[1] >= self.min_timed_steps:
            self._measure()
        if self.steps_done >= self.ends_at:
            self.model.stop_training = True

    def _measure(self) -> None:
        assert self.mark is not None
        now = time.time()
        self.seconds_per_step = (now - self.mark[0]) / (self.steps_done - self.mark[1])
        fits = self.steps_done + int((self.deadline - now) / self.seconds_per_step)
        ends_at = max(self.steps_done, min(self.upper_steps, fits))
        if ends_at != self.ends_at:
            if not self._stretch(ends_at):
                self.mark = None  # a space without HyperCNN's schedule keeps its plan
                return
            self.ends_at = ends_at

    @property
    def annealed(self) -> bool:
        """The schedule ran to its end (the rate reached zero) before training stopped."""
        return self.steps_done >= self.ends_at

    def describe(self) -> str | None:
        """One line on what the clock did (None if it never measured)."""
        if self.seconds_per_step is None:
            return None
        where = (
            f"its upper limit of {self.upper_steps // self.steps_per_epoch} epochs"
            if self.ends_at >= self.upper_steps
            else "the time budget"
        )
        return (
            f"the final training measured {self.seconds_per_step * 1000:.1f} ms per step: its schedule "
            f"ended at step {self.ends_at} ({self.ends_at / self.steps_per_epoch:.2f} epochs), at {where}"
        )

    def _stretch(self, total_steps: int) -> bool:
        try:
            set_schedule_steps(self.model, total_steps)
        except TypeError:
            return False
        return True


def retrain_best(
    config: SearchConfig, tuner: HyperCNNTuner, splits: Splits, best: BestTrial, budget_s: float | None = None
) -> Retrained:
    """No validation data is left to watch, so it trains exactly the epochs the search found best, or
    with a budget, the epochs that fit it (planned from the search's pace, corrected by its own)."""
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    record = tuner.run.read_trial_record(best.trial_id)
    epochs = retrain_epochs(best, record, len(y), len(splits.y_train), len(splits.y_test), budget_s)
    if epochs != best.epochs:
        print(f"the time budget fits {epochs} epochs (the best epoch count was {best.epochs})")
    # A fresh schedule sized for this data and these epochs, same normalisation as the search.
    spec = dataclasses.replace(tuner.hypermodel.data, train_size=len(y))
    hypermodel = build_hypermodel(config, spec)
    hp = best.hyperparameters.copy()
    hp.values["tuner/epochs"] = epochs
    model = hypermodel.build(hp)
    on_device = hypermodel.kernels.data == "device"
    train = make_dataset(x, y, len(splits.class_names), config.batch_size, True, config.seed, on_device)
    print(
        f"retraining trial {best.trial_id} on train+validation ({len(y)} images) for {epochs} epoch(s)",
        flush=True,
    )
    # A diverged final training is stopped at once; the caller trains the next candidate instead.
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    upper = epochs
    stop = StopAtDeadline(None)
    clock: ScheduleToDeadline | None = None
    budgeted = budget_s is not None and bool(record.get("epochs_trained"))
    if budgeted:
        _, after = retrain_pace(record, len(splits.y_train), len(splits.y_test))
        # Training ends here at the latest, so that testing, exports and the page fit the budget.
        deadline = started + final_training_seconds(budget_s, after)
        # Room to correct a plan that was too short; Keras's progress shows this upper bound.
        upper = min(MAX_RETRAIN_EPOCHS, max(epochs, int(epochs * 1.5) + 1))
        clock = ScheduleToDeadline(deadline, epochs, upper, hypermodel.data.steps_per_epoch)
        # A safety net for a machine that slows down mid-run: the job still ends inside its budget.
        stop = StopAtDeadline(deadline)
        callbacks += [clock, stop]
    history = hypermodel.fit(hp, model, train, epochs=upper, callbacks=callbacks)
    if clock is not None and clock.describe():
        print(clock.describe(), flush=True)
    diverged = not np.all(np.isfinite(history.history.get("loss", [0.0])))
    recalibrated = 0
    if not diverged:
        # The moving statistics trail the weights; a short final training leaves them far off.
        recalibrated = recompute_batch_norm_statistics(model, x, config.batch_size, seed=config.seed)
    # Under a budget the final training's own clock decides how many epochs it ran.
    epochs = len(history.epoch) if budgeted or diverged else epochs
    if stop.stopped and not (clock is not None and clock.annealed):
        print(f"the final training reached the time budget after {len(history.epoch)} epochs, unannealed")
    curves = {"epoch": [e + 1 for e in history.epoch]}
    curves.update({name: [float(v) for v in values] for name, values in history.history.items()})
    return Retrained(model, curves, time.time() - started, epochs, diverged, recalibrated)
