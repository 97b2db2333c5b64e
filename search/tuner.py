"""KerasTuner's Hyperband with a time budget, a known-good first trial and a live leaderboard.

The bracket math is KerasTuner's own (HyperbandOracle); this module only adds what a long,
interruptible search needs around it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import random
import shutil
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd

from search import attempts, compat
from search.config import SearchConfig
from search.leases import LEASE_METRIC_PREFIX, LeasedOracleMixin, attempt_name, holder_in
from search.objective import Objective, get_objective
from search.ranking import best_kerastuner_trial, leaderboard
from search.runfolder import (
    TRIAL_RECORD,
    TUNER_PROJECT,
    RunFolder,
    error_line,
    read_json,
    trials_table,
    write_csv,
    write_json,
)
from search.sampler import RANDOM_SHARE, model_values
from search.timing import StepClock
from spaces.base import SpaceHyperModel
from spaces.recipe import stretch_schedule

# Checkpoints kept besides those a Hyperband promotion may still need: the best few trials'.
KEEP_TOP_CHECKPOINTS = 3


def process_tuner_id(role: str) -> str:
    """A tuner id no other process of this search shares (a lease names its holder by it)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000) % 10_000_000}"


# KerasTuner prints every failed trial's traceback; we print one line and keep the full
# traceback in the trial's trial.json (and its last line in trials.csv).
compat.silence_keras_tuner_tracebacks()
compat.silence_condition_proto_print()


class BudgetedHyperbandOracle(LeasedOracleMixin, compat.OracleHooks, kt.oracles.HyperbandOracle):
    """HyperbandOracle that stops handing out trials at a deadline, starts from the space's portfolio
    (its default first) and then proposes at random or, with sampler "model", mostly from a TPE
    model of the finished trials (search.sampler)."""

    deadline: float | None = None

    def __init__(
        self, *args: Any, sampler: str = "random", portfolio: tuple[dict, ...] = ({},), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        compat.keep_oracle_seed(self, kwargs.get("seed"))
        self.sampler = sampler
        self.portfolio = portfolio
        # Where each new configuration came from (default, portfolio, random, model), by trial id;
        # saved with the oracle's state, shown in trials.csv.
        self.proposals: dict[str, str] = {}
        self._proposing_for: str | None = None
        # Set once Hyperband has nothing left to hand out (the chief then ends when no lease is left).
        self.finished = False
        # The plan's budget pick (queue_budget_pick): the second and last new configuration.
        self.budget_pick: dict[str, Any] | None = None
        self.init_leases()

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    @compat.synchronized
    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        # After the default and the budget pick nothing new is handed out; an interrupted trial (a
        # resume, a lost worker) still runs again.
        limit_reached = (
            self.budget_pick is not None
            and self.new_configurations() >= 2
            and not compat.has_trials_to_retry(self)
        )
        if self.stopping or self.past_deadline() or limit_reached:
            self.tuner_ids.discard(tuner_id)
            return kt.engine.trial.Trial(
                self.hyperparameters.copy(), status=kt.engine.trial.TrialStatus.STOPPED
            )
        self.expire_leases()
        trial = super().create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.RUNNING:
            self.grant(trial, tuner_id)
        elif trial.status == kt.engine.trial.TrialStatus.STOPPED:
            self.finished = True
        return trial

    @compat.synchronized
    def update_trial(self, trial_id: str, metrics: Any, step: int = 0) -> kt.engine.trial.Trial:
        """A worker's report names its holder (search.leases): it renews the lease, and a holder that
        lost its lease is told to stop. Reports without a holder come from this process's own tuner."""
        holder = holder_in(metrics)
        if holder is not None:
            if not self.renew(trial_id, holder):
                return self.lease_stopped_trial(trial_id)
            metrics = {k: v for k, v in metrics.items() if not k.startswith(LEASE_METRIC_PREFIX)}
            if not metrics:  # a heartbeat
                return self.trials[trial_id]
        return super().update_trial(trial_id, metrics, step=step)

    @compat.synchronized
    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        holder = self.accept_end(trial)
        if holder is None:
            return
        self.commit_attempt(trial, holder)
        super().end_trial(trial)
        self.leases.pop(trial.trial_id, None)
        # KerasTuner saved its state before taking the trial off its ongoing list: a kill right now
        # would run the finished trial again on resume.
        self.save()
        if self.on_trial_ended is not None:
            self.on_trial_ended(self.trials[trial.trial_id])

    @compat.synchronized
    def check_leases(self) -> list[str]:
        """The chief's timer: lost workers' trials go back to the queue."""
        return self.expire_leases()

    def running(self) -> dict[str, str]:
        """Running trials and their holders."""
        return {trial_id: lease.holder for trial_id, lease in self.leases.items()}

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        self._proposing_for = trial_id
        try:
            return super().populate_space(trial_id)
        finally:
            self._proposing_for = None

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "proposals": self.proposals, **self.lease_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.proposals = dict(state.get("proposals", {}))
        self.set_lease_state(state)

    def new_configurations(self) -> int:
        """Configurations proposed so far (promotions re-use their parent's)."""
        return sum(1 for t in self.trials.values() if t.hyperparameters.values.get("tuner/trial_id") is None)

    def portfolio_values(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A portfolio entry completed with the defaults of every active hyper-parameter it omits."""
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = entry.get(hp.name, hp.default)
        return hps.values

    def queue_budget_pick(self, values: dict[str, Any]) -> None:
        """The plan found nothing worth searching but a configuration better than the default at this
        budget (search.plan.BudgetPick): it is the next and last new configuration."""
        self.budget_pick = values

    def propose_values(self) -> dict[str, Any] | None:
        values, source = self._propose()
        if values is not None and self._proposing_for is not None:
            self.proposals[self._proposing_for] = source
        return values

    def _propose(self) -> tuple[dict[str, Any] | None, str]:
        # The first trials are configurations known to train well, the space's default first: a search
        # cut short by its budget then ends no worse than the default.
        index = self.new_configurations()
        if index == 1 and self.budget_pick is not None:
            if not compat.oracle_has_tried(self, self.budget_pick):
                return self.budget_pick, "budget"
        elif index < len(self.portfolio):
            values = self.portfolio_values(self.portfolio[index])
            if not compat.oracle_has_tried(self, values):
                return values, "default" if index == 0 else "portfolio"
        # Seeded by the number of trials so far: the same history proposes the same configuration,
        # after a resume too.
        seed = self.seed * 100_003 + len(self.trials) if self.seed is not None else len(self.trials)
        if self.sampler == "model" and random.Random(seed).random() >= RANDOM_SHARE:
            values = model_values(
                self.hyperparameters.space,
                list(self.trials.values()),
                maximize=self.objective.direction == "max",
                seed=seed,
            )
            if values is not None and not compat.oracle_has_tried(self, values):
                return values, "model"
        return self.random_values(), "random"


class StopAtDeadline(keras.callbacks.Callback):
    """Ends training at the deadline, after the current call of the compiled step (up to 16 steps in
    long trainings); the partial epoch is still validated and kept. `lease_lost` (a worker's): the
    chief gave the trial to another worker, so this attempt stops at once."""

    def __init__(self, deadline: float | None, lease_lost: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.lease_lost = lease_lost
        self.stopped = False
        self.abandoned = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.deadline is not None and time.time() >= self.deadline:
            self.model.stop_training = True
            self.stopped = True
        if self.lease_lost is not None and self.lease_lost():
            self.model.stop_training = True
            self.abandoned = True


class EpochRecorder(keras.callbacks.Callback):
    """Keeps every epoch's metrics (for curves), notices a diverging loss, and at the end saves the
    last state (weights and optimizer) that a Hyperband promotion continues from."""

    def __init__(
        self,
        folder: Path,
        objective: Objective,
        restored: attempts.EpochState | None = None,
        after_epoch: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.objective = objective
        # The attempt's own folder (search.attempts): every epoch's state, then the last and best.
        self.folder = folder
        self.last_checkpoint = str(folder / attempts.LAST_CHECKPOINT)
        # KerasTuner's SaveBestEpoch writes this whenever the objective improves on the trial's best.
        self.best_checkpoint = str(folder / attempts.BEST_CHECKPOINT)
        self.after_epoch = after_epoch
        self.history: dict[str, list[float]] = {"epoch": []}
        self.best_score: float | None = None
        if restored is not None:  # an earlier attempt's epochs count as this trial's
            self.history = {name: list(values) for name, values in restored.history.items()}
            for score in self.history.get(objective.name, []):
                if objective.better(float(score), self.best_score):
                    self.best_score = float(score)
        self.last_epoch_was_best = False
        self.diverged_at: int | None = None
        self.steps: list[int] = []
        self.precision: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.steps = [int(self.model.optimizer.iterations)]
        self.precision = self.model.dtype_policy.name

    def on_train_end(self, logs: dict | None = None) -> None:
        self.steps.append(int(self.model.optimizer.iterations))
        if self.diverged_at is not None or not self.history["epoch"]:
            return
        if self.last_epoch_was_best and os.path.exists(self.best_checkpoint):
            # SaveBestEpoch saved this very state at the last epoch's end: a file copy (~1 ms)
            # instead of serializing it again (~35 ms per trial, fast space).
            shutil.copyfile(self.best_checkpoint, self.last_checkpoint)
        else:
            self.model.save_weights(self.last_checkpoint)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.history["epoch"].append(epoch + 1)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))
        score = logs.get(self.objective.name)
        self.last_epoch_was_best = score is not None and self.objective.better(float(score), self.best_score)
        if self.last_epoch_was_best:
            self.best_score = float(score)
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            self.diverged_at = epoch + 1
            self.model.stop_training = True
            return
        # A killed process continues from here (search.attempts); also renews a worker's lease.
        attempts.save_epoch(self.folder, self.model, epoch + 1, self.history)
        if self.after_epoch is not None:
            self.after_epoch()


class HyperCNNTuner(compat.TunerHooks, kt.Hyperband):
    """keras_tuner.Hyperband over a SpaceHyperModel, writing trials.csv as trials finish."""

    # Finished trials' models kept in memory (oldest out first, at most config.model_cache_mb of
    # variables), so that a promotion goes on training the same compiled model: no rebuild, no
    # retracing of its training step. Promotions whose parent was dropped, or ran before a resume,
    # load the parent's checkpoint instead.
    max_live_models = 32

    def __init__(
        self,
        config: SearchConfig,
        hypermodel: SpaceHyperModel,
        overwrite: bool | None = None,
        role: str = "main",
        oracle_client: Callable[[kt.Oracle], Any] | None = None,
    ) -> None:
        self.config = config
        self.objective = get_objective(config.objective)
        self.run = RunFolder(config.out)
        self.deadline: float | None = None
        self.search_started = time.time()
        self.live_models: OrderedDict[str, keras.Model] = OrderedDict()
        self.live_bytes: dict[str, int] = {}
        # Called after every trial (search.run uses it to plan a job's budget from the first trial).
        self.after_trial: Callable[[kt.engine.trial.Trial], None] | None = None
        # A worker's: renews its lease after each epoch, and says when the lease is gone.
        self.after_epoch: Callable[[], None] | None = None
        self.lease_lost: Callable[[], bool] | None = None
        self.running_trial: str | None = None
        self._continued_from: str | None = None
        self._restored: attempts.EpochState | None = None
        oracle = BudgetedHyperbandOracle(
            objective=kt.Objective(self.objective.name, direction=self.objective.direction),
            sampler=config.sampler,
            portfolio=({}, *hypermodel.portfolio),
            max_epochs=config.max_epochs,
            factor=config.factor,
            hyperband_iterations=config.hyperband_sweeps(),
            seed=config.seed,
            max_consecutive_failed_trials=config.max_consecutive_failed_trials,
        )
        # Skip Hyperband.__init__ (it only builds a plain HyperbandOracle); keep its run_trial.
        kt.Tuner.__init__(
            self,
            oracle=oracle,
            hypermodel=hypermodel,
            directory=str(config.out),
            project_name=TUNER_PROJECT,
            overwrite=config.overwrite if overwrite is None else overwrite,
        )
        # KerasTuner names every tuner "tuner0" unless told otherwise; each process's attempts and
        # leases need a name of their own.
        self.tuner_id = os.environ.get("KERASTUNER_TUNER_ID") or process_tuner_id(role)
        self.attempt = attempt_name(self.tuner_id)
        if oracle_client is not None:  # a worker: the chief's oracle, through our client (search.worker)
            self.oracle = oracle_client(oracle)
        if isinstance(self.oracle, BudgetedHyperbandOracle):  # not a worker's client of the chief's
            self.oracle.on_trial_ended = self.trial_ended
            # A resumed oracle comes back with the iteration count it was saved with; this invocation's
            # decides, and an iteration in progress finishes (KerasTuner stops only when the count is
            # the current iteration + 1, so a smaller one would never stop).
            current = self.oracle.get_state()["current_iteration"]
            self.oracle.hyperband_iterations = max(config.hyperband_sweeps(), current + 1)

    def callbacks_to_share(self, callbacks: list) -> list:
        # KerasTuner deep-copies callbacks per execution; ours must stay the instances we read.
        return [c for c in callbacks if isinstance(c, (StopAtDeadline, EpochRecorder, StepClock))]

    def tuner_state_file(self) -> str:
        # Stable across processes for the one that owns the oracle (resume reads it); a worker's own.
        name = attempt_name(os.environ.get("KERASTUNER_TUNER_ID", "tuner0"))
        return str(self.run.tuner_dir / f"{name}.json")

    def trial_dir(self, trial_id: str) -> Path:
        return self.run.tuner_dir / f"trial_{trial_id}"

    def attempt_dir(self, trial_id: str) -> Path:
        return attempts.attempt_dir(self.trial_dir(trial_id), self.attempt)

    def last_checkpoint(self, trial_id: str) -> str:
        """A finished trial's last state (weights and optimizer), which its promotion continues."""
        return str(self.trial_dir(trial_id) / attempts.LAST_CHECKPOINT)

    def checkpoint_path(self, trial_id: str) -> str:
        # While it runs, a trial's best epoch goes to this attempt's folder (search.attempts).
        if trial_id == self.running_trial:
            return str(self.attempt_dir(trial_id) / attempts.BEST_CHECKPOINT)
        return self.best_epoch_checkpoint(trial_id)

    def continues_live_model(self, hp: kt.HyperParameters) -> bool:
        """A promotion whose parent's compiled model is still in memory (it trains on, as is)."""
        return hp.values.get("tuner/trial_id") in self.live_models

    def _keeping_live_kernels(self, hp: kt.HyperParameters) -> contextlib.AbstractContextManager:
        """For a promotion that continues its parent's model in memory, seeding keeps TensorFlow's
        kernel cache (the parent's compiled step). A new trial clears it, live models or not: kept
        for every trial, it grew a 100-trial search's memory by about 8 MB a trial (bench/soak.py);
        a live model's later promotion re-optimizes its step once instead. (Keras's layers draw
        stateless random numbers, so no cached kernel carries a random state across the seeding.)"""
        return compat.keeping_tensorflow_kernel_cache(self.continues_live_model(hp))

    def build_trial_model(self, hp: kt.HyperParameters) -> keras.Model:
        """KerasTuner's build step with one garbage collection instead of two (its clear_session
        collects, then it collects again), and no session clear for a promotion that continues its
        parent's model in memory."""
        if not self.continues_live_model(hp):
            keras.backend.clear_session(free_memory=True)
        model = self.build_or_continue(hp)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(f"HyperModel.build() returned {type(model).__name__}, not a Model")
        if self.max_model_size and model.count_params() > self.max_model_size:
            raise kt.errors.FailedTrialError(
                f"oversized model: {model.count_params()} parameters (limit {self.max_model_size})"
            )
        return model

    def on_search_begin(self) -> None:
        super().on_search_begin()
        # TensorFlow and Keras create ~450,000 objects that live as long as the process; every full
        # garbage collection (one per trial) scans them all. Frozen, a collection measured 0.02-0.1 s
        # instead of 0.2-0.3 s.
        gc.collect()
        gc.freeze()

    def on_search_end(self) -> None:
        gc.unfreeze()
        super().on_search_end()

    def search(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().search(*args, **kwargs)
        finally:
            # on_search_end runs only when the search ends normally; Ctrl-C or an error must not
            # leave the process's objects frozen (never collected) either.
            gc.unfreeze()

    def build_or_continue(self, hp: kt.HyperParameters) -> keras.Model:
        """A promoted trial continues its parent: weights, optimizer moments and step count.

        KerasTuner's Hyperband reloads only the parent's best-epoch weights into a fresh optimizer,
        which restarts momentum and the learning-rate schedule. Restoring the optimizer's step
        puts the promoted trial at its place in its (longer) schedule instead.
        """
        parent = hp.values.get("tuner/trial_id")
        if self._restored is not None:
            # An earlier attempt of this very trial was killed: continue from its newest epoch.
            model = self.stock_build(hp)
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(self._restored.weights)
            self._continued_from = f"epoch {self._restored.epoch} of attempt {self._restored.attempt}"
            return model
        if self.continues_live_model(hp):
            model = self.live_models.pop(parent)
            self.live_bytes.pop(parent, None)
            stretch_schedule(model, hp.values["tuner/epochs"], self.hypermodel.data.steps_per_epoch)
            self._continued_from = "memory"
            return model
        model = self.stock_build(hp)
        if parent is None:
            return model
        self._continued_from = "checkpoint"
        checkpoint = self.last_checkpoint(parent)
        if not os.path.exists(checkpoint):  # parent from an older run: fall back to KerasTuner's
            checkpoint = self.best_epoch_checkpoint(parent)
        if not model.optimizer.built:  # load_weights restores the optimizer's variables into these
            model.optimizer.build(model.trainable_variables)
        model.load_weights(checkpoint)
        return model

    def _keep_live(self, trial_id: str, model: keras.Model) -> None:
        self.live_models[trial_id] = model
        self.live_bytes[trial_id] = model_bytes(model)
        limit = self.config.model_cache_mb * 2**20
        while self.live_models and (
            len(self.live_models) > self.max_live_models or sum(self.live_bytes.values()) > limit
        ):
            dropped, _ = self.live_models.popitem(last=False)
            self.live_bytes.pop(dropped, None)

    def best_trial(self) -> kt.engine.trial.Trial | None:
        """The best trial by search.ranking's rule (KerasTuner's own order among ties follows the
        order it read trials from disk)."""
        return best_kerastuner_trial(self.oracle.trials, self.objective)

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.oracle.deadline = deadline

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        clock = StepClock()
        self._seed(trial)
        deadline = StopAtDeadline(self.deadline, self.lease_lost)
        values = trial.hyperparameters.values
        # An earlier attempt's newest epoch (kill -9, a lost worker): this attempt continues from it.
        restored = attempts.newest_epoch(self.trial_dir(trial.trial_id), exclude=self.attempt)
        if restored is not None and restored.epoch <= values.get("tuner/initial_epoch", 0):
            restored = None
        recorder = EpochRecorder(
            self.attempt_dir(trial.trial_id), self.objective, restored, after_epoch=self.after_epoch
        )
        recorder.folder.mkdir(parents=True, exist_ok=True)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), deadline, recorder, clock]
        if self.config.tensorboard:
            kwargs["callbacks"].append(keras.callbacks.TensorBoard(log_dir=str(self.run.tensorboard_dir)))
        self._continued_from = None
        self._restored = restored
        self.running_trial = trial.trial_id
        initial_epoch = values.get("tuner/initial_epoch")
        if restored is not None:
            # Keras's fit starts at this epoch; the trial's own values are put back below.
            values["tuner/initial_epoch"] = restored.epoch
            print(
                f"[trial {trial.trial_id}] continues from epoch {restored.epoch} "
                f"(saved by attempt {restored.attempt})",
                flush=True,
            )
        try:
            results = super().run_trial(trial, *args, **kwargs)
        except Exception as error:
            if not out_of_memory(error):
                raise
            # Live models hold device memory the next trial may need; promotions reload checkpoints.
            self.live_models.clear()
            self.live_bytes.clear()
            raise kt.errors.FailedTrialError(out_of_memory_reason(error, self.config.batch_size)) from error
        finally:
            if restored is not None:
                values["tuner/initial_epoch"] = initial_epoch
            self._restored = None
            self.running_trial = None
            self._record(trial, recorder, deadline, clock, restored)
        if restored is not None:
            results = [with_earlier_epochs(history, restored) for history in results]
        if deadline.abandoned:
            raise kt.errors.FailedTrialError("lease lost: the chief gave this trial to another worker")
        if recorder.diverged_at is None and not deadline.stopped and recorder.model is not None:
            self._keep_live(trial.trial_id, recorder.model)
        if recorder.diverged_at is not None:
            values = trial.hyperparameters.values
            learning_rate = next((v for k, v in values.items() if k.endswith("learning_rate")), None)
            raise kt.errors.FailedTrialError(
                f"diverged: loss became NaN/inf at epoch {recorder.diverged_at} "
                f"(learning_rate {learning_rate}); lower the learning-rate range of the space"
            )
        return results

    def _seed(self, trial: kt.engine.trial.Trial) -> None:
        """Each trial gets its own reproducible seed, the same on resume."""
        with self._keeping_live_kernels(trial.hyperparameters):
            keras.utils.set_random_seed(self.config.seed * 100_003 + int(trial.trial_id))

    def _record(
        self,
        trial,
        recorder: EpochRecorder,
        deadline: StopAtDeadline,
        clock: StepClock,
        restored: attempts.EpochState | None,
    ) -> None:
        history = recorder.history
        scores = history.get(self.objective.name, [])
        best = min(range(len(scores)), key=lambda i: self.objective.sort_key(scores[i])) if scores else None
        note = None
        if recorder.diverged_at is not None:
            note = "DIVERGED"
        elif deadline.stopped:
            note = "CUT_BY_BUDGET"
        write_json(
            self.attempt_dir(trial.trial_id) / TRIAL_RECORD,
            {
                **clock.summary(),
                # The epoch this attempt continued from (an earlier attempt was killed), else None.
                "resumed_from_epoch": restored.epoch if restored else None,
                "epochs_trained": len(history["epoch"]),
                "best_epoch": history["epoch"][best] if best is not None else None,
                "status_note": note,
                # Wall-clock end, for the report's best-so-far against time.
                "finished_at": time.time(),
                # Optimizer steps at the start and end: a promoted trial starts where its parent ended.
                "optimizer_steps": recorder.steps,
                "precision": recorder.precision,
                # A promotion: "memory" (the parent's compiled model went on training) or
                # "checkpoint" (rebuilt, then the parent's last weights and optimizer state loaded).
                "continued_from": self._continued_from,
                "history": history,
            },
        )

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        # The trial's traced steps stay pinned by TensorFlow's gradient registry unless dropped here.
        compat.forget_custom_gradients()
        release_freed_memory()
        if trial.message:  # KerasTuner's gRPC messages leave the reason out: the record carries it
            record_path = self.attempt_dir(trial.trial_id) / TRIAL_RECORD
            write_json(record_path, {**(read_json(record_path) or {}), "error": error_line(trial.message)})
        # Ends the trial in the oracle: in this process (then trial_ended runs) or the chief's.
        super().on_trial_end(trial)

    def trial_ended(self, trial: kt.engine.trial.Trial) -> None:
        """Runs where the oracle lives, once a trial's attempt is committed: the leaderboard, the
        progress line, the job's budget plan, and deleting checkpoints nothing can use any more."""
        table = self.write_leaderboard()
        self._print_trial_line(trial)
        self.prune_checkpoints(table)
        self.forget_unpromotable_models()
        if self.after_trial is not None:
            self.after_trial(trial)

    def forget_unpromotable_models(self) -> None:
        """Live models serve only their trial's promotion: once the trial left every open Hyperband
        bracket, its model and traced steps are freed (kept, they grew a 100-trial search's memory by
        hundreds of MB; bench/soak.py)."""
        open_trials = set() if self.oracle.finished else compat.hyperband_open_trials(self.oracle)
        for trial_id in [t for t in self.live_models if t not in open_trials]:
            del self.live_models[trial_id]
            self.live_bytes.pop(trial_id, None)

    def prune_checkpoints(self, table: pd.DataFrame | None = None) -> None:
        """A finished trial's checkpoints serve only a promotion: once it left every open Hyperband
        bracket (all of them, once Hyperband has finished), they go, except the best
        KEEP_TOP_CHECKPOINTS trials' and running trials' parents."""
        oracle = self.oracle
        if table is None:
            table = trials_table(oracle.trials, self.run, self.objective.name)
        table = leaderboard(table, self.objective)
        keep = set(table["trial_id"].head(KEEP_TOP_CHECKPOINTS)) if len(table) else set()
        if not oracle.finished:
            keep |= compat.hyperband_open_trials(oracle)
        keep |= {
            t.hyperparameters.values.get("tuner/trial_id")
            for t in oracle.trials.values()
            if t.status == "RUNNING"
        }
        for trial_id, trial in oracle.trials.items():
            if trial_id not in keep and trial.status != "RUNNING":
                attempts.drop_checkpoints(self.trial_dir(trial_id))

    def write_leaderboard(self) -> pd.DataFrame:
        table = trials_table(self.oracle.trials, self.run, self.objective.name, self.oracle.proposals)
        if len(table):
            write_csv(self.run.trials_csv, table)
        return table

    def _print_trial_line(self, trial: kt.engine.trial.Trial) -> None:
        trial = self.oracle.get_trial(trial.trial_id)
        record = self.run.read_trial_record(trial.trial_id)
        worker = ""
        if record.get("worker") and record["worker"] != self.tuner_id:
            worker = f" on {record['worker'].split(':')[0]}"
        attempt = f" (attempt {record['attempts']})" if record.get("attempts", 1) > 1 else ""
        score = trial.score if trial.score is not None else float("nan")
        best = self.best_trial()
        best_text = f"best {best.score:.4f} (trial {best.trial_id})" if best else "no best yet"
        elapsed = time.time() - self.search_started
        budget = ""
        if self.deadline is not None:
            budget = f", {max(0.0, self.deadline - time.time()) / 60:.1f} min of budget left"
        status = record.get("status_note") or trial.status
        print(
            f"[trial {trial.trial_id}{worker}{attempt}] {status:<9} {self.objective.name} {score:.4f} "
            f"after {record.get('epochs_trained', 0)} epoch(s) in {record.get('seconds', 0):.0f}s | "
            f"{best_text} | {elapsed / 60:.1f} min elapsed{budget}",
            flush=True,
        )
        if trial.status == "FAILED" and trial.message:
            print(f"    reason: {error_line(trial.message)}", file=sys.stderr, flush=True)


def out_of_memory(error: BaseException) -> bool:
    """A device ran out of memory: TensorFlow's ResourceExhaustedError, or XLA's RESOURCE_EXHAUSTED
    (JAX), told apart by name and message so that neither backend needs the other imported."""
    text = str(error)
    return (
        type(error).__name__ == "ResourceExhaustedError"
        or "RESOURCE_EXHAUSTED" in text
        or "OOM when allocating" in text
    )


def out_of_memory_reason(error: BaseException, batch_size: int) -> str:
    """One line for trials.csv: what ran out, and the fixes (the search goes on with other trials)."""
    text = " ".join(str(error).split())
    detail = next((part.strip() for part in text.split(";") if "OOM" in part or "memory" in part), text)
    return (
        f"out of memory: {detail[:160]}; this configuration does not fit the device at batch size "
        f"{batch_size} (the search goes on with others); a lower --batch-size fits larger ones"
    )


def release_freed_memory() -> None:
    """Hands memory that freed trials left in glibc's heaps back to the system (malloc_trim): without
    it a long search's resident memory grows as TensorFlow's freed buffers fragment the heap."""
    gc.collect()  # the dropped trial's graphs are reference cycles: freed only by a collection
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return
    libc.malloc_trim(0)


def model_bytes(model: keras.Model) -> int:
    """Bytes of a model's variables and its optimizer's (what a live model holds besides its traced
    step)."""
    variables = list(model.variables) + (list(model.optimizer.variables) if model.optimizer else [])
    return sum(
        int(math.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in variables
    )


def with_earlier_epochs(history: Any, restored: attempts.EpochState) -> Any:
    """A resumed attempt's Keras History with the earlier attempt's epochs in front: KerasTuner scores
    the trial by its best epoch of all."""
    if not isinstance(history, keras.callbacks.History):
        return history
    earlier = len(restored.history.get("epoch", []))
    # Every metric the earlier attempt recorded, also when this attempt trained no epoch at all (the
    # killed one had saved its last epoch): KerasTuner then reports these to the oracle, which scores
    # the trial from them.
    names = list(history.history) + [n for n in restored.history if n != "epoch" and n not in history.history]
    for name in names:
        values = history.history.get(name, [])
        history.history[name] = list(restored.history.get(name, [math.nan] * earlier)) + list(values)
    return history
