"""StepClock: where a trial's seconds go, so the search can show what it spends besides training.

Useful work is the steady training steps and the validation passes; everything else in a trial's
wall time (model build, compile, the first step's tracing, checkpoints, bookkeeping) is overhead.
bench/throughput.py sums it over a search; trials.csv shows it per trial.
"""

from __future__ import annotations

import statistics
import time

import keras


class StepClock(keras.callbacks.Callback):
    """Made when the trial starts: its wall time counts from construction to ``summary()``."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        # Seconds per call of the compiled training step; a call runs several steps on long trainings
        # (spaces.recipe.steps_per_execution).
        self.train_calls: list[float] = []
        # The optimizer counts the steps itself, however many run per call.
        self._iterations_at_start: int | None = None
        self.test_calls: list[list[float]] = []  # per validation pass, seconds per call
        self.train_begin: float | None = None
        self._step_started = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.train_begin = time.perf_counter()
        self._iterations_at_start = int(self.model.optimizer.iterations)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.train_calls.append(time.perf_counter() - self._step_started)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.test_calls.append([])

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._step_started = time.perf_counter()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.test_calls:
            self.test_calls[-1].append(time.perf_counter() - self._step_started)

    @staticmethod
    def _steady_total(steps: list[float]) -> tuple[float, float]:
        """(steady seconds, tracing seconds): the first call of a compiled function also traces it;
        it counts as a typical step plus its excess."""
        if not steps:
            return 0.0, 0.0
        typical = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
        excess = max(0.0, steps[0] - typical)
        return sum(steps) - excess, excess

    def steps_run(self) -> int:
        if self._iterations_at_start is None:
            return 0
        return int(self.model.optimizer.iterations) - self._iterations_at_start

    def summary(self) -> dict[str, float]:
        """The trial's seconds so far, split into steady training, validation, setup (build,
        compile and, for a promotion, restoring the parent, before the first step), tracing,
        and overhead (everything but training steps and validation)."""
        seconds = time.perf_counter() - self.started
        setup = (self.train_begin or time.perf_counter()) - self.started
        train, train_trace = self._steady_total(self.train_calls)
        # Keras traces its test function once per fit: the first validation pass carries it.
        validation = validation_trace = 0.0
        for index, steps in enumerate(self.test_calls):
            steady, excess = self._steady_total(steps)
            validation += steady + (excess if index else 0.0)
            validation_trace += 0.0 if index else excess
        return {
            "seconds": round(seconds, 2),
            "train_seconds": round(train, 3),
            "validation_seconds": round(validation, 3),
            "trace_seconds": round(train_trace + validation_trace, 3),
            "train_steps": self.steps_run(),
            "setup_seconds": round(setup, 3),
            "overhead_seconds": round(seconds - train - validation, 3),
        }
