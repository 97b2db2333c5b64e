"""Device-resident training on JAX: spaces.device_loop's calls as jitted functions.

Keras 3.15 runs `steps_per_execution` on JAX as a Python loop of one jitted call per step, each fed
a batch copied from the host. Here each call runs up to MAX_STEPS_PER_CALL steps under
`jax.lax.scan` (idle steps at an epoch's end skipped by `lax.cond`), each gathering its batch by
index from the split on the device; on a CPU one step a call (default_steps_per_call). The images are
arguments of the jitted calls, never model variables, so no checkpoint or export holds them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from spaces.device_loop import compiled_once

# Steps one compiled call runs on an accelerator: the host then waits on the device once per this
# many steps (a few ms each on a GPU). On a CPU one: XLA:CPU runs a step inside a loop (lax.scan) or
# a conditional 13x slower than the same step alone (fast space, width 16, 2 AVX2 cores: 5.5 s per
# step of 128 under scan, 0.4 s alone), and a host-side loop over steps costs nothing there.
MAX_STEPS_PER_CALL = 64


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

    # The cached call must not keep its model alive (compiled_once).
    owner, num_classes = weakref.proxy(model), split.num_classes

    def many_steps(state: Any, images: Any, labels: Any, indices: Any, active: Any) -> Any:
        def train(state: Any, step_indices: Any) -> Any:
            _, state = owner.train_step(state, _gather(images, labels, num_classes, step_indices))
            return state

        def step(state: Any, inputs: Any) -> Any:
            step_indices, runs = inputs
            # An idle step (past the epoch's end) leaves the state as it is; only one branch runs.
            return jax.lax.cond(runs, train, lambda state, _: state, state, step_indices), None

        if indices.shape[0] == 1:  # one step a call (a CPU): no loop, no conditional around it
            state = train(state, indices[0])
        else:
            state, _ = jax.lax.scan(step, state, (indices, active))
        return epoch_logs(owner, state[3]), state

    compiled = compiled_once(model, "train", split.num_classes, lambda: jax.jit(many_steps, donate_argnums=0))

    def train_function(state: Any, iterator: Iterator) -> Any:
        indices, active = next(iterator)
        return compiled(state, split.images, split.labels, indices, active)

    return train_function


def evaluation_function(model: keras.Model, split: DeviceSplit) -> Any:
    """A Keras JAX test_function over a ValidationCalls iterator."""
    import jax

    owner, num_classes = weakref.proxy(model), split.num_classes

    def many_steps(state: Any, images: Any, labels: Any, indices: Any) -> Any:
        def step(state: Any, step_indices: Any) -> Any:
            _, state = owner.test_step(state, _gather(images, labels, num_classes, step_indices))
            return state, None

        if indices.shape[0] == 1:
            state, _ = step(state, indices[0])
        else:
            state, _ = jax.lax.scan(step, state, indices)
        return epoch_logs(owner, state[2]), state

    compiled = compiled_once(model, "test", split.num_classes, lambda: jax.jit(many_steps))

    def test_function(state: Any, iterator: Iterator) -> Any:
        (indices,) = next(iterator)
        return compiled(state, split.images, split.labels, indices)

    return test_function
