"""Device-resident training: the split on the accelerator, many steps per compiled call.

On a GPU, Keras's loop fed host batches lets the host set the pace: each step's batch is copied from
the host and (on JAX, Keras 3.15) each step is its own call. Here the uint8 split is copied to the
device once (cached on the batches object it came from, so every trial of a search reuses it), each
call of the training function runs many steps, each gathering its shuffled batch by index on the
device, and the model's in-step augmentation (spaces.augment_ops) crops, flips and cuts out inside
the same compiled step. Only int32 batch indices cross from the host, once per call. Validation runs
the same way. This module plans the calls and drives Keras's fit; the compiled calls are each
backend's own (spaces.device_loop_jax: jax.lax.scan; spaces.device_loop_tf: tf.while_loop).

Keras's own `fit` still drives epochs, callbacks, validation and the state kept between them: only
its `train_function` and `test_function` are swapped for these while the fit runs. The images are
arguments of the compiled calls, never model variables, so no checkpoint or export holds them.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import keras
import numpy as np

from search import compat
from search.errors import HyperCNNError

# Each model's compiled calls, kept while the model lives: a promotion trained in memory, or a fit
# per epoch, must not compile them again (6 s each for the fast space on 2 CPU cores). Keyed by
# what they close over besides the data, which they take as arguments. The calls hold their model
# only weakly (weakref.proxy): a strong reference would keep every trial's model, its weights on
# the GPU among them, alive for the whole search.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_once(model: keras.Model, kind: str, num_classes: int, make: Callable[[], Any]) -> Any:
    """The model's compiled call of this kind, made by `make` the first time."""
    per_model = _COMPILED.setdefault(model, {})
    key = (kind, id(model.optimizer), num_classes)
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def backend_steps() -> ModuleType:
    """The backend's compiled calls: DeviceSplit, training_function, evaluation_function and
    default_steps_per_call."""
    if keras.backend.backend() == "jax":
        from spaces import device_loop_jax

        return device_loop_jax
    if keras.backend.backend() == "tensorflow":
        from spaces import device_loop_tf  # the TensorFlow path (spaces.kernels)

        return device_loop_tf
    raise HyperCNNError(
        f"the device-resident loop runs on JAX and TensorFlow, not {keras.backend.backend()}; "
        "train with --data-on host, or set KERAS_BACKEND=jax or tensorflow"
    )


def device_split(batches: Any) -> Any:
    """The device copy of a search.pipeline.ArrayBatches, made on first use and kept on it."""
    split = getattr(batches, "device_split", None)
    if split is None:
        split = backend_steps().DeviceSplit(batches.x, batches.y, batches.num_classes)
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
    """Every image once: the remainder as one smaller batch first, then the full batches in order,
    in calls of up to `batches_per_call` (all of them by default). Remainder first because Keras on
    TensorFlow fixes the calls' shapes from the first two it sees: those two must differ where any do."""

    def __init__(self, size: int, batch_size: int, batches_per_call: int | None = None) -> None:
        super().__init__()
        full, rest = divmod(size, batch_size)
        order = np.arange(size, dtype="int32")
        batches = order[: full * batch_size].reshape(full, batch_size)
        per_call = max(1, batches_per_call or full)
        self.calls = [order[full * batch_size :].reshape(1, rest)] if rest else []
        self.calls += [batches[first : first + per_call] for first in range(0, full, per_call)]

    def __len__(self) -> int:
        return len(self.calls)

    def __getitem__(self, index: int) -> tuple[np.ndarray]:
        return (self.calls[index],)


@contextlib.contextmanager
def _device_functions(model: keras.Model, train: Any, validation: Any) -> Iterator[None]:
    """Keras's fit with these train and test functions; afterwards its own again (evaluate and
    predict on arrays must not meet index batches)."""
    steps_per_execution = model.steps_per_execution
    model.steps_per_execution = 1  # each item of the calls is already many steps
    steps = backend_steps()
    model.train_function = steps.training_function(model, train)
    model.test_function = steps.evaluation_function(model, validation) if validation is not None else None
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
    steps_per_call = steps_per_call or backend_steps().default_steps_per_call()
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
