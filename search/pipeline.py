"""tf.data pipelines from uint8 arrays: shuffle, batch, one-hot labels, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from spaces.augment import PARALLEL_CALLS, PREFETCH_BATCHES


def pipeline_options() -> tf.data.Options:
    """tf.data's autotuner off; the stages use fixed parallelism and prefetch depth instead.

    The autotuner's background thread stalled ~1 s while an epoch's iterators shut down at the
    end of 2 fits in 5 (measured on 2 cores), and a search runs a fit per trial. The whole pipeline
    costs about a millisecond per batch, so fixed settings lose nothing. Options flow downstream:
    fit()'s augmentation stage inherits them.
    """
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
