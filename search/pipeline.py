"""Training and validation batches from uint8 arrays: shuffled, batched, labels one-hot.

On TensorFlow, a tf.data pipeline (its augmentation stage is added by the space's fit). On any
other backend, a keras.utils.PyDataset over the arrays, so nothing imports TensorFlow; there the
model augments inside its training step (spaces.augment_ops). Where the split lives on the device
(spaces.device_loop, any backend), the same PyDataset: the loop takes its arrays from it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """uint8 image batches with one-hot labels, reshuffled every epoch when `shuffle` (seeded)."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, shuffle: bool, seed: int
    ) -> None:
        super().__init__()
        self.x, self.y = x, np.asarray(y)
        self.num_classes, self.batch_size, self.shuffle, self.seed = num_classes, batch_size, shuffle, seed
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        labels = np.eye(self.num_classes, dtype="float32")[self.y[chosen]]
        return self.x[chosen], labels

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    on_device: bool = False,
) -> Any:
    """Images stay uint8 until they reach the model, which rescales them itself. `on_device` (the
    kernels' data is "device"): the arrays as they are, for spaces.device_loop to copy to the device."""
    if on_device or keras.backend.backend() != "tensorflow":
        return ArrayBatches(x, y, num_classes, batch_size, shuffle, seed)
    return tf_dataset(x, y, num_classes, batch_size, shuffle, seed)


def pipeline_options() -> Any:
    """tf.data's autotuner off; the stages use fixed parallelism and prefetch depth instead.

    The autotuner's background thread stalled ~1 s while an epoch's iterators shut down at the
    end of 2 fits in 5 (measured on 2 cores), and a search runs a fit per trial. The whole pipeline
    costs about a millisecond per batch, so fixed settings lose nothing. Options flow downstream:
    fit()'s augmentation stage inherits them.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def tf_dataset(
    x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, shuffle: bool, seed: int
) -> Any:
    """The TensorFlow path's tf.data pipeline."""
    import tensorflow as tf

    from spaces.augment import PARALLEL_CALLS, PREFETCH_BATCHES

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        # A full-size buffer over uint8 images is cheap (50,000 CIFAR images are 150 MB).
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # One-hot per batch, not per image: one op call instead of batch_size of them.
    dataset = dataset.map(
        lambda images, labels: (images, tf.one_hot(labels, num_classes)), num_parallel_calls=PARALLEL_CALLS
    )
    return dataset.prefetch(PREFETCH_BATCHES).with_options(pipeline_options())
