"""tf.data pipelines from uint8 arrays: shuffle, batch, one-hot labels, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Images stay uint8 until they reach the model, which rescales them itself."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        # A full-size buffer over uint8 images is cheap (50,000 CIFAR images are 150 MB).
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # One-hot per batch, not per image: one op call instead of batch_size of them.
    dataset = dataset.map(
        lambda images, labels: (images, tf.one_hot(labels, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
