"""Device-resident training on JAX: the split on the accelerator, many steps per compiled call.

Keras 3.15 runs `steps_per_execution` on JAX as a Python loop of one jitted call per step, each fed
a batch copied from the host, so on a GPU the host sets the pace. Here the uint8 split is copied to
the device once (cached on the batches object it came from, so every trial of a search reuses it);
each call of the training function runs up to MAX_STEPS_PER_CALL steps under `jax.lax.scan`, each
gathering its shuffled batch by index on the device, and the model's in-step augmentation
(spaces.augment_ops) crops, flips and cuts out inside the same compiled step. Only int32 batch
indices cross from the host, once per call. Validation runs the same way. On a CPU each call is one
step (default_steps_per_call): there the data still stays put and the step is one compiled call.

Keras's own `fit` still drives epochs, callbacks, validation and the state kept between them: only
its `train_function` and `test_function` are swapped for these while the fit runs. The images are
arguments of the compiled calls, never model variables, so no checkpoint or export holds them.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from search import compat

# Steps one compiled call runs on an accelerator: the host then waits on the device once per this
# many steps (a few ms each on a GPU). On a CPU one: XLA:CPU runs a step inside a loop (lax.scan) or
# a conditional 13x slower than the same step alone (fast space, width 16, 2 AVX2 cores: 5.5 s per
# step of 128 under scan, 0.4 s alone), and a host-side loop over steps costs nothing there.
MAX_STEPS_PER_CALL = 64


# Each model's compiled calls, kept while the model lives: a promotion trained in memory, or a fit
# per epoch, must not compile them again (6 s each for the fast space on 2 CPU cores). Keyed by
# what they close over besides the data, which they take as arguments.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(model: keras.Model, kind: str, num_classes: int, make: Callable[[], Any]) -> Any:
    per_model = _COMPILED.setdefault(model, {})
    key = (kind, id(model.optimizer), num_classes)
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def default_steps_per_call() -> int:
    import jax

    return 1 if jax.default_backend() == "cpu" else MAX_STEPS_PER_CALL


class DeviceSplit:
    """A split's uint8 images and integer labels on the default JAX device."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        import jax

        self.images = jax.device_put(np.ascontiguousarray(images))
        self.labels = jax.device_put(np.asarray(labels, dtype="int32"))
        self.num_classes = num_classes
        self.size = len(labels)


def device_split(batches: Any) -> DeviceSplit:
    """The device copy of a search.pipeline.ArrayBatches, made on first use and kept on it."""
    split = getattr(batches, "device_split", None)
    if split is None:
        split = DeviceSplit(batches.x, batches.y, batches.num_classes)
        batches.device_split = split
    return split


class TrainingCalls(keras.utils.PyDataset):
    """Per call: the batch indices of its steps (steps x batch, int32) and which steps run.

    Epoch e's order is a permutation seeded by (seed, e), so a later fit that starts at epoch e (a
    promotion trained on in memory, a resumed trial) gets the order an unbroken one would have. The
    last batch is filled up from the permutation's start so every step has the same shape; the last
    call's unused steps are marked off, not dropped, so one compiled call serves the whole fit."""

    def __init__(self, size: int, batch_size: int, steps_per_call: int, shuffle: bool, seed: int) -> None:
        super().__init__()
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.steps = math.ceil(size / batch_size)
        self.steps_per_call = max(1, min(steps_per_call, self.steps))
        self.next_epoch = 0
        self.on_epoch_begin()

    def on_epoch_begin(self) -> None:
        """Keras calls this once before each epoch (before the first, when fit starts)."""
        epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        filled = np.resize(order, self.steps * self.batch_size)  # repeats from the start
        self.batches = filled.reshape(self.steps, self.batch_size).astype("int32")

    def __len__(self) -> int:
        return math.ceil(self.steps / self.steps_per_call)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        first = index * self.steps_per_call
        chosen = self.batches[first : first + self.steps_per_call]
        active = np.ones(self.steps_per_call, dtype=bool)
        if len(chosen) < self.steps_per_call:  # the epoch's last call: the rest of its steps idle
            active[len(chosen) :] = False
            idle = np.zeros((self.steps_per_call - len(chosen), self.batch_size), dtype="int32")
            chosen = np.concatenate([chosen, idle])
        return chosen, active


class ValidationCalls(keras.utils.PyDataset):
    """Every image once, in order: the full batches in calls of up to `batches_per_call` (all of
    them by default), then the remainder as one smaller batch."""

    def __init__(self, size: int, batch_size: int, batches_per_call: int | None = None) -> None:
        super().__init__()
        full, rest = divmod(size, batch_size)
        order = np.arange(size, dtype="int32")
        batches = order[: full * batch_size].reshape(full, batch_size)
        per_call = max(1, batches_per_call or full)
        self.calls = [batches[first : first + per_call] for first in range(0, full, per_call)]
        if rest:
            self.calls.append(order[full * batch_size :].reshape(1, rest))

    def __len__(self) -> int:
        return len(self.calls)

    def __getitem__(self, index: int) -> tuple[np.ndarray]:
        return (self.calls[index],)


def _gather(images: Any, labels: Any, num_classes: int, indices: Any) -> tuple[Any, Any]:
    """One batch, taken on the device: uint8 images as the model takes them, one-hot labels."""
    import jax
    import jax.numpy as jnp

    batch = jnp.take(images, indices, axis=0)
    return batch, jax.nn.one_hot(jnp.take(labels, indices), num_classes, dtype="float32")


def epoch_logs(model: keras.Model, metrics_variables: Any) -> dict[str, Any]:
    """The metrics' results (loss included) as the given metric variables hold them: what Keras's
    own train step returns after each step, read once after the call's last step."""
    mapping = list(zip(model.metrics_variables, metrics_variables, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        return model.get_metrics_result()


def training_function(model: keras.Model, split: DeviceSplit) -> Any:
    """A Keras JAX train_function: (state, iterator) -> (logs, state), one call of many steps."""
    import jax

    def many_steps(state: Any, images: Any, labels: Any, indices: Any, active: Any) -> Any:
        def train(state: Any, step_indices: Any) -> Any:
            _, state = model.train_step(state, _gather(images, labels, split.num_classes, step_indices))
            return state

        def step(state: Any, inputs: Any) -> Any:
            step_indices, runs = inputs
            # An idle step (past the epoch's end) leaves the state as it is; only one branch runs.
            return jax.lax.cond(runs, train, lambda state, _: state, state, step_indices), None

        if indices.shape[0] == 1:  # one step a call (a CPU): no loop, no conditional around it
            state = train(state, indices[0])
        else:
            state, _ = jax.lax.scan(step, state, (indices, active))
        return epoch_logs(model, state[3]), state

    compiled = _compiled(model, "train", split.num_classes, lambda: jax.jit(many_steps, donate_argnums=0))

    def train_function(state: Any, iterator: Iterator) -> Any:
        indices, active = next(iterator)
        return compiled(state, split.images, split.labels, indices, active)

    return train_function


def evaluation_function(model: keras.Model, split: DeviceSplit) -> Any:
    """A Keras JAX test_function over a ValidationCalls iterator."""
    import jax

    def many_steps(state: Any, images: Any, labels: Any, indices: Any) -> Any:
        def step(state: Any, step_indices: Any) -> Any:
            _, state = model.test_step(state, _gather(images, labels, split.num_classes, step_indices))
            return state, None

        if indices.shape[0] == 1:
            state, _ = step(state, indices[0])
        else:
            state, _ = jax.lax.scan(step, state, indices)
        return epoch_logs(model, state[2]), state

    compiled = _compiled(model, "test", split.num_classes, lambda: jax.jit(many_steps))

    def test_function(state: Any, iterator: Iterator) -> Any:
        (indices,) = next(iterator)
        return compiled(state, split.images, split.labels, indices)

    return test_function


@contextlib.contextmanager
def _device_functions(
    model: keras.Model, train: DeviceSplit, validation: DeviceSplit | None
) -> Iterator[None]:
    """Keras's fit with these train and test functions; afterwards its own again (evaluate and
    predict on arrays must not meet index batches)."""
    steps_per_execution = model.steps_per_execution
    model.steps_per_execution = 1  # each item of the calls is already many steps
    model.train_function = training_function(model, train)
    model.test_function = evaluation_function(model, validation) if validation is not None else None
    try:
        yield
    finally:
        model.steps_per_execution = steps_per_execution
        model.train_function = None
        model.test_function = None


def fit_on_device(
    model: keras.Model,
    batches: Any,
    validation_data: Any = None,
    steps_per_call: int | None = None,
    **fit_kwargs: Any,
) -> keras.callbacks.History:
    """model.fit with the data on the device. `batches` and `validation_data` are search.pipeline
    ArrayBatches (their arrays, batch size, shuffling and seed); `steps_per_call` defaults to the
    device's (default_steps_per_call); the rest goes to fit unchanged."""
    steps_per_call = steps_per_call or default_steps_per_call()
    train = device_split(batches)
    validation = device_split(validation_data) if validation_data is not None else None
    # fit builds metrics, loss and optimizer from its first batch, which here holds indices: one
    # batch of images and labels does it instead.
    images, labels = batches[0]
    compat.build_for_fit(model, images[:1], labels[:1])
    calls = TrainingCalls(train.size, batches.batch_size, steps_per_call, batches.shuffle, batches.seed)
    # Keras's fit begins the first epoch itself (on_epoch_begin): with its order, not epoch 0's.
    calls.next_epoch = fit_kwargs.get("initial_epoch", 0)
    validation_calls = None
    if validation is not None:
        validation_calls = ValidationCalls(validation.size, validation_data.batch_size, steps_per_call)
    fit_kwargs["shuffle"] = False  # TrainingCalls reshuffles every epoch itself
    with _device_functions(model, train, validation):
        return model.fit(calls, validation_data=validation_calls, **fit_kwargs)
