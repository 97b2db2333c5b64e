"""Every use of KerasTuner, Keras and TensorFlow internals, in one place.

Each use says why nothing public works and what breaks without it. They were checked against the
versions in CHECKED_VERSIONS, which pyproject.toml pins exactly; tests/test_compat.py fails at once
when an installed version differs or when any name here disappears or changes signature, and when
an underscore name of these libraries is used anywhere else in the package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import keras_tuner as kt

CHECKED_VERSIONS = {"keras-tuner": "1.4.8", "keras": "3.15.1", "tensorflow": "2.21.0"}


def silence_keras_tuner_tracebacks() -> None:
    """KerasTuner prints every failed trial's whole traceback when its DEBUG flag is set (the
    default); we print one line and keep the traceback in the trial's trial.json. No public switch."""
    kt.src.config.DEBUG = False


@contextlib.contextmanager
def keeping_tensorflow_kernel_cache(active: bool) -> Iterator[None]:
    """Keras's clear_session and tf.random.set_seed each empty TensorFlow's whole kernel cache,
    which holds the live models' compiled steps: a promotion then re-optimized its step (0.2 s on its
    first step instead of 0.01, fast space). While `active`, the cache is kept by making TensorFlow's
    cache-clearing call a no-op. Without it: promotions are slower by that much, nothing else."""
    if not active:
        yield
        return
    from tensorflow.python import pywrap_tfe

    clear_caches = pywrap_tfe.TFE_ContextClearCaches
    pywrap_tfe.TFE_ContextClearCaches = lambda handle: None
    try:
        yield
    finally:
        pywrap_tfe.TFE_ContextClearCaches = clear_caches


def learning_rate_schedule(optimizer: keras.optimizers.Optimizer) -> Any:
    """The schedule object a compiled optimizer holds: `.learning_rate` is its current value, not the
    schedule, and a promotion must stretch the schedule in place (no retrace of the step). Under
    mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer: the schedule is its inner one's."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer._learning_rate


def build_compile_metrics(model: keras.Model) -> None:
    """Builds the compiled accuracy metric's variables now: left to the first training step, they are
    created inside its trace and the step is traced twice (0.31 instead of 0.15 s per new trial).
    Keras's own _symbolic_build does the same but traces the forward pass (50 ms)."""
    model._compile_metrics.build(keras.KerasTensor(model.outputs[0].shape), model.outputs[0])


def optimizer_slot(optimizer: keras.optimizers.Optimizer, slots: str, variable: Any) -> Any:
    """An optimizer's slot variable (momentum, velocity) for `variable`: the fused update kernels
    (spaces.optimizers) write them in place. Keras keeps them in lists indexed by a private lookup."""
    return getattr(optimizer, slots)[optimizer._get_variable_index(variable)]


def oracle_has_tried(oracle: kt.Oracle, values: dict[str, Any]) -> bool:
    """Whether the oracle already proposed these values (a portfolio entry or a model proposal must
    not repeat a trial): KerasTuner keeps its hashes of tried values private."""
    return oracle._duplicate(values)


class OracleHooks:
    """Routes KerasTuner's private proposal step to a public method of ours.

    `propose_values` is called where KerasTuner's Oracle calls `_random_values`; `random_values` is
    KerasTuner's own random proposal. Without this hook the first trial would not be the defaults.
    """

    def _random_values(self) -> dict[str, Any] | None:
        return self.propose_values()

    def random_values(self) -> dict[str, Any] | None:
        return super()._random_values()

    def propose_values(self) -> dict[str, Any] | None:
        return self.random_values()


class TunerHooks:
    """Routes KerasTuner's private build and callback steps to public methods of ours.

    KerasTuner's Tuner has no public hook for: which callbacks are deep-copied per execution (ours
    must stay the instances we read), building a trial's model (we skip a session clear for a
    promotion that continues in memory, and continue a parent's optimizer state), or where a trial's
    best-epoch checkpoint lives.
    """

    def _deepcopy_callbacks(self, callbacks: list) -> list:
        kept = self.callbacks_to_share(callbacks)
        return super()._deepcopy_callbacks([c for c in callbacks if c not in kept]) + kept

    def _try_build(self, hp: kt.HyperParameters) -> keras.Model:
        return self.build_trial_model(hp)

    def _build_hypermodel(self, hp: kt.HyperParameters) -> keras.Model:
        return self.build_or_continue(hp)

    def stock_build(self, hp: kt.HyperParameters) -> keras.Model:
        """KerasTuner's Tuner build (not Hyperband's: it would reload the parent's best weights into a
        fresh optimizer)."""
        return kt.Tuner._build_hypermodel(self, hp)

    def best_epoch_checkpoint(self, trial_id: str) -> str:
        return self._get_checkpoint_fname(trial_id)

    def callbacks_to_share(self, callbacks: list) -> list:
        return []

    def build_trial_model(self, hp: kt.HyperParameters) -> keras.Model:
        return super()._try_build(hp)

    def build_or_continue(self, hp: kt.HyperParameters) -> keras.Model:
        return self.stock_build(hp)


# Every internal name used above, as (owner, attribute, parameters or None for a non-callable), for
# tests/test_compat.py: a rename or a new signature in a library upgrade fails that test first.
def internal_names() -> list[tuple[object, str, list[str] | None]]:
    from tensorflow.python import pywrap_tfe

    return [
        (kt.src.config, "DEBUG", None),
        (pywrap_tfe, "TFE_ContextClearCaches", None),
        (kt.Oracle, "_random_values", ["self"]),
        (kt.Oracle, "_duplicate", ["self", "values"]),
        (kt.Tuner, "_deepcopy_callbacks", ["self", "callbacks"]),
        (kt.Tuner, "_try_build", ["self", "hp"]),
        (kt.Tuner, "_build_hypermodel", ["self", "hp"]),
        (kt.Tuner, "_get_checkpoint_fname", ["self", "trial_id"]),
        (keras.optimizers.Optimizer, "_get_variable_index", ["self", "variable"]),
    ]
