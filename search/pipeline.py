"""tf.data pipelines from uint8 arrays: shuffle, batch, one-hot labels, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from spaces.augment import PARALLEL_CALLS, PREFETCH_BATCHES

# Fixed parallelism and prefetch depth (the augmentation stage's), with tf.data's autotuner off.
# The autotuner's background thread made ~1 s stalls at the end of 2 fits in 5 (tearing down the
# epoch's iterators), 1-3 s of a 5-10 s search trial; the whole pipeline costs a few ms per
# batch, so a fixed setting loses nothing. Options flow downstream: fit()'s augmentation map
# inherits them.


def pipeline_options() -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


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
        lambda images, labels: (images, tf.one_hot(labels, num_classes)), num_parallel_calls=PARALLEL_CALLS
    )
    return dataset.prefetch(PREFETCH_BATCHES).with_options(pipeline_options())
