"""Every use of KerasTuner, Keras and TensorFlow internals, in one place.

Each use says why nothing public works and what breaks without it. They were checked against the
versions in CHECKED_VERSIONS, which pyproject.toml pins exactly; tests/test_compat.py fails at once
when an installed version differs or when any name here disappears or changes signature, and when
an underscore name of these libraries is used anywhere else in the package.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import keras
import keras_tuner as kt

CHECKED_VERSIONS = {"keras-tuner": "1.4.8", "keras": "3.15.1", "tensorflow": "2.21.0"}


def silence_keras_tuner_tracebacks() -> None:
    """KerasTuner prints every failed trial's whole traceback when its DEBUG flag is set (the
    default); we print one line and keep the traceback in the trial's trial.json. No public switch."""
    kt.src.config.DEBUG = False


def silence_condition_proto_print() -> None:
    """KerasTuner 1.4.8's Parent.to_proto prints its first value (a left-over debug print): the chief
    serializes every conditional hyper-parameter for every gRPC answer, which filled the progress view
    with 'sgd_nesterov' lines. A module-level `print` shadows the builtin for that module alone."""
    from keras_tuner.src.engine import conditions

    conditions.print = lambda *args, **kwargs: None


@contextlib.contextmanager
def keeping_tensorflow_kernel_cache(active: bool) -> Iterator[None]:
    """Keras's clear_session and tf.random.set_seed each empty TensorFlow's whole kernel cache,
    which holds the live models' compiled steps: a promotion then re-optimized its step (0.2 s on its
    first step instead of 0.01, fast space). While `active`, the cache is kept by making TensorFlow's
    cache-clearing call a no-op. Without it: promotions are slower by that much, nothing else."""
    if not active or keras.backend.backend() != "tensorflow":
        yield
        return
    from tensorflow.python import pywrap_tfe

    clear_caches = pywrap_tfe.TFE_ContextClearCaches
    pywrap_tfe.TFE_ContextClearCaches = lambda handle: None
    try:
        yield
    finally:
        pywrap_tfe.TFE_ContextClearCaches = clear_caches


def synchronized(method: Callable[..., Any]) -> Callable[..., Any]:
    """kt.synchronized (one oracle call at a time across the chief's gRPC threads), releasing the
    oracle's lock when the call raises: KerasTuner 1.4.8 releases it only on return, so one exception
    in a chief's oracle left every later call (every worker's, and the chief's own lease timer)
    waiting forever."""
    oracle_module = compat_modules()["oracle"]
    locked = kt.synchronized(method)

    @functools.wraps(method)
    def call(oracle: Any, *args: Any, **kwargs: Any) -> Any:
        thread = threading.current_thread().name
        outermost = oracle_module.THREADS[oracle] != thread
        try:
            return locked(oracle, *args, **kwargs)
        except BaseException:
            if outermost and oracle_module.THREADS[oracle] == thread:
                oracle_module.THREADS[oracle] = None
                oracle_module.LOCKS[oracle].release()
            raise

    return call


CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def forget_custom_gradients() -> int:
    """Drops the gradient functions tf.custom_gradient registered while tracing: returns how many.

    Every traced Keras training step calls the default replica context's all_reduce on its gradients
    (keras TFOptimizer._all_reduce_sum_gradients), which is a tf.custom_gradient; in graph mode that
    registers a new "CustomGradient-<n>" function in TensorFlow's global gradient registry, never
    removed, whose closure holds the step's symbolic tensors and so its whole FuncGraph (TensorFlow
    #97697, #80895; the same purge is proposed upstream in tf-keras #898). About 6 MB per trained
    model: a 100-trial search grew by 430 MB (bench/soak.py). The entries are read only while a step's
    gradients are traced, so between trials they serve nothing; a model that traces again registers
    new ones. Other backends have no such registry: 0."""
    if keras.backend.backend() != "tensorflow":
        return 0
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    names = [name for name in registry if name.startswith(CUSTOM_GRADIENT_PREFIX)]
    for name in names:
        del registry[name]
    return len(names)


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


def build_for_fit(model: keras.Model, images: Any, labels: Any) -> None:
    """Builds what fit builds from its first batch (compiled loss and metrics, optimizer) from this
    one: the device-resident loop (spaces.device_loop) feeds fit batch indices, not images, and fit
    would build from those. Keras's _symbolic_build is that step; it has no public name."""
    model._symbolic_build(data_batch=(images, labels))


def optimizer_slot(optimizer: keras.optimizers.Optimizer, slots: str, variable: Any) -> Any:
    """An optimizer's slot variable (momentum, velocity) for `variable`: the fused update kernels
    (spaces.optimizers) write them in place. Keras keeps them in lists indexed by a private lookup."""
    return getattr(optimizer, slots)[optimizer._get_variable_index(variable)]


def requeue_trial(oracle: kt.Oracle, trial_id: str) -> None:
    """Sends a running trial whose worker was lost back to KerasTuner's retry queue, which hands it
    out before any new trial (the same queue KerasTuner fills on resume); it has no public method."""
    if trial_id not in oracle._retry_queue:
        oracle._retry_queue.append(trial_id)


def has_trials_to_retry(oracle: kt.Oracle) -> bool:
    """Whether KerasTuner's retry queue holds a trial to hand out again (an interrupted trial on
    resume, a lost worker's); it has no public reading."""
    return bool(oracle._retry_queue)


def oracle_trial_dir(oracle: kt.Oracle, trial_id: str) -> str:
    """The folder KerasTuner keeps a trial's files in, seen from its oracle (the chief has no tuner
    that would say it publicly)."""
    return oracle._get_trial_dir(trial_id)


def hyperband_open_trials(oracle: kt.oracles.HyperbandOracle) -> set[str]:
    """Trials in a Hyperband bracket that is still open (one of them may yet be promoted): a
    checkpoint is deleted only once its trial left every open bracket. The brackets are private."""
    return {info["id"] for bracket in oracle._brackets for round_ in bracket["rounds"] for info in round_}


def hyperband_first_bracket(oracle: kt.oracles.HyperbandOracle) -> list[tuple[int, int]]:
    """The rounds of the bracket Hyperband starts with (its most aggressive), as (trials, epochs): the
    budget plan needs how long the search runs before a trial is promoted, and KerasTuner computes its
    bracket sizes only in private methods. Without it: the plan's minimum search is guessed."""
    bracket = oracle._get_num_brackets() - 1
    rounds = range(oracle._get_num_rounds(bracket))
    return [(oracle._get_size(bracket, r), oracle._get_epochs(bracket, r)) for r in rounds]


def oracle_client_class() -> type:
    """KerasTuner's gRPC client of the chief's oracle (a worker's `tuner.oracle`): workers subclass it
    to name themselves in reports, renew their lease and wait instead of spinning. Not exported."""
    from keras_tuner.src.distribute import oracle_client

    return oracle_client.OracleClient


def oracle_service() -> tuple[type, Any]:
    """KerasTuner's gRPC servicer of an oracle and the function that adds it to a server; the chief
    serves its oracle with them (KerasTuner's own start_server blocks and never notices lost workers)."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    return oracle_chief.OracleServicer, protos.get_service_grpc().add_OracleServicer_to_server


def set_chief_timeout(seconds: float) -> None:
    """Every stock OracleClient call waits up to an hour for the chief (keras-tuner #990); a worker
    that lost its chief must say so in minutes. The timeout is a module constant."""
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


def keep_oracle_seed(oracle: kt.Oracle, seed: int | None) -> None:
    """KerasTuner 1.4.8's Oracle sets `self.seed = seed or random.randint(1, 10000)`: seed 0 (our
    default) is falsy, so every `--seed 0` search drew different random configurations. Its random
    proposals read the private `_seed_state`, which starts at the seed."""
    if seed is not None:
        oracle.seed = seed
        oracle._seed_state = seed


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
    best-epoch checkpoint lives, or its state file (named after the tuner id, which is unique per
    process in HyperCNN: a resumed search must find its predecessor's).
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

    def _get_checkpoint_fname(self, trial_id: str) -> str:
        return self.checkpoint_path(trial_id)

    def _get_tuner_fname(self) -> str:
        return self.tuner_state_file()

    def tuner_state_file(self) -> str:
        """KerasTuner names its state file after the tuner id; a resumed search finds it by this name."""
        return kt.Tuner._get_tuner_fname(self)

    def best_epoch_checkpoint(self, trial_id: str) -> str:
        """Where KerasTuner keeps a trial's best-epoch weights (the committed copy)."""
        return kt.Tuner._get_checkpoint_fname(self, trial_id)

    def checkpoint_path(self, trial_id: str) -> str:
        return self.best_epoch_checkpoint(trial_id)

    def callbacks_to_share(self, callbacks: list) -> list:
        return []

    def build_trial_model(self, hp: kt.HyperParameters) -> keras.Model:
        return super()._try_build(hp)

    def build_or_continue(self, hp: kt.HyperParameters) -> keras.Model:
        return self.stock_build(hp)


def compat_modules() -> dict[str, Any]:
    from keras_tuner.src.distribute import oracle_chief, oracle_client
    from keras_tuner.src.engine import oracle

    return {"oracle_client": oracle_client, "oracle_chief": oracle_chief, "oracle": oracle}


# Every internal name used above, as (owner, attribute, parameters or None for a non-callable), for
# tests/test_compat.py: a rename or a new signature in a library upgrade fails that test first.
def internal_names() -> list[tuple[object, str, list[str] | None]]:
    from tensorflow.python import pywrap_tfe
    from tensorflow.python.framework import ops

    return [
        (kt.src.config, "DEBUG", None),
        (compat_modules()["oracle"], "THREADS", None),
        (compat_modules()["oracle"], "LOCKS", None),
        (ops, "_gradient_registry", None),
        (ops._gradient_registry, "_registry", None),
        (pywrap_tfe, "TFE_ContextClearCaches", None),
        (kt.Oracle, "_random_values", ["self"]),
        (kt.Oracle(objective="val_accuracy"), "_seed_state", None),
        (kt.Oracle, "_duplicate", ["self", "values"]),
        (kt.Tuner, "_deepcopy_callbacks", ["self", "callbacks"]),
        (kt.Tuner, "_try_build", ["self", "hp"]),
        (kt.Tuner, "_build_hypermodel", ["self", "hp"]),
        (kt.Tuner, "_get_checkpoint_fname", ["self", "trial_id"]),
        (kt.Tuner, "_get_tuner_fname", ["self"]),
        (kt.Oracle, "_get_trial_dir", ["self", "trial_id"]),
        (kt.oracles.HyperbandOracle, "_get_num_brackets", ["self"]),
        (kt.oracles.HyperbandOracle, "_get_num_rounds", ["self", "bracket_num"]),
        (kt.oracles.HyperbandOracle, "_get_size", ["self", "bracket_num", "round_num"]),
        (kt.oracles.HyperbandOracle, "_get_epochs", ["self", "bracket_num", "round_num"]),
        (compat_modules()["oracle_client"], "TIMEOUT", None),
        (compat_modules()["oracle_client"], "OracleClient", None),
        (compat_modules()["oracle_chief"], "OracleServicer", None),
        (keras.optimizers.Optimizer, "_get_variable_index", ["self", "variable"]),
        (keras.Model, "_symbolic_build", ["self", "iterator", "data_batch"]),
    ]
