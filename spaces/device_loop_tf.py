"""Device-resident training on TensorFlow: spaces.device_loop's calls as TensorFlow functions.

The uint8 split is copied to the GPU (the CPU where there is none) once; each call of the training
function runs its steps in one `tf.while_loop` inside one `tf.function`, each step gathering its
batch by index on the device and calling the model's own `train_step` (with the in-step
augmentation of spaces.augment_ops). The loop runs only the call's active steps, so the epoch's last
call needs no conditional. Only int32 indices cross from the host, once per call.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from spaces.device_loop import compiled_once

# On a CPU too a call may run many steps: a tf.while_loop costs nothing per step there (unlike
# XLA:CPU's loops on JAX), and Keras's own host loop around each call is what it saves.
STEPS_PER_CALL = 64


def default_steps_per_call() -> int:
    return STEPS_PER_CALL


class DeviceSplit:
    """A split's uint8 images and integer labels on the first GPU, else the CPU."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        device = "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"
        with tf.device(device):
            self.images = tf.identity(tf.constant(np.ascontiguousarray(images)))
            self.labels = tf.identity(tf.constant(np.asarray(labels, dtype="int32")))
        self.num_classes = num_classes
        self.size = len(labels)


def _gather(images: tf.Tensor, labels: tf.Tensor, num_classes: int, indices: tf.Tensor) -> tuple:
    return tf.gather(images, indices), tf.one_hot(tf.gather(labels, indices), num_classes)


def _steps(model: keras.Model, step: Any, split: tuple, indices: tf.Tensor, count: tf.Tensor) -> Any:
    """`count` steps of `step` (the model's train_step or test_step), one batch of indices each, then
    the metrics' results: what Keras's own loop returns after its last step."""
    images, labels, num_classes = split

    def body(index: tf.Tensor) -> tf.Tensor:
        data = _gather(images, labels, num_classes, indices[index])
        logs = model.distribute_strategy.run(step, args=(data,))
        with tf.control_dependencies(tf.nest.flatten(logs)):  # the step's updates before the next
            return index + 1

    if indices.shape[0] == 1:  # one step a call: no loop around it
        done = body(tf.constant(0))
    else:
        done = tf.while_loop(lambda index: index < count, body, [tf.constant(0)])
    with tf.control_dependencies([done]):
        return model.get_metrics_result()


def training_function(model: keras.Model, split: DeviceSplit) -> Any:
    """A Keras TensorFlow train_function: iterator of (indices, active) -> logs."""

    # The cached call must not keep its model alive (compiled_once).
    owner, num_classes = weakref.proxy(model), split.num_classes

    @tf.autograph.experimental.do_not_convert
    def many_steps(images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor, active: tf.Tensor) -> Any:
        count = tf.reduce_sum(tf.cast(active, "int32"))  # the active steps come first
        return _steps(owner, owner.train_step, (images, labels, num_classes), indices, count)

    compiled = compiled_once(
        model, "train", num_classes, lambda: tf.function(many_steps, jit_compile=model.jit_compile)
    )

    def train_function(iterator: Iterator) -> Any:
        indices, active = next(iterator)
        return compiled(split.images, split.labels, indices, active)

    return train_function


def evaluation_function(model: keras.Model, split: DeviceSplit) -> Any:
    """A Keras TensorFlow test_function over a ValidationCalls iterator."""

    owner, num_classes = weakref.proxy(model), split.num_classes

    @tf.autograph.experimental.do_not_convert
    def many_steps(images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor) -> Any:
        return _steps(owner, owner.test_step, (images, labels, num_classes), indices, tf.shape(indices)[0])

    # Calls of full batches and one of the remainder: traced once for each shape.
    compiled = compiled_once(
        model, "test", num_classes, lambda: tf.function(many_steps, jit_compile=model.jit_compile)
    )

    def test_function(iterator: Iterator) -> Any:
        (indices,) = next(iterator)
        return compiled(split.images, split.labels, indices)

    return test_function
