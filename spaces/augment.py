"""The recipe's augmentation on TensorFlow's CPU path: whole uint8 batches inside the tf.data pipeline.

Where it is cheapest: integer shifts and masks on uint8 batches cost a fraction of Keras's
in-model preprocessing layers, which transform float32 images with an interpolating projective
warp on every training step. Measured on 2 CPU cores (bench/throughput.py): see the README.

Same augmentations as the Keras layers the plain path uses (spaces.recipe.keras_augmentation):
horizontal flip, pad-and-crop by up to ``crop`` pixels (reflect padding), and cutout.
"""

from __future__ import annotations

import os

import tensorflow as tf

from spaces.augment_ops import CUTOUT_AREA, Augmentation

__all__ = ["Augmentation", "augment_batch", "augment_dataset", "random_crop", "random_cutout", "random_flip"]

# Fixed, not tf.data.AUTOTUNE: search.pipeline turns tf.data's autotuner off (it says why), and
# this stage inherits the options of the pipeline it extends. One batch in flight per core.
PARALLEL_CALLS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PREFETCH_BATCHES = 2


def random_flip(images: tf.Tensor) -> tf.Tensor:
    flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def reflect(index: tf.Tensor, size: int) -> tf.Tensor:
    """Pixel indices outside [0, size) mirrored back in, as reflect padding does (-1 -> 1)."""
    index = tf.abs(index)
    return tf.where(index >= size, 2 * (size - 1) - index, index)


def random_crop(images: tf.Tensor, pad: int, flip: bool = False) -> tf.Tensor:
    """A random 32x32 window of each reflect-padded image, mirrored half the time if `flip`.

    Two batched gathers and no padded copy: the window's row and column indices are reflected
    into the image, and a flip just reverses an image's column indices. The padded copy (MirrorPad)
    and a whole-batch select for the flip had cost 3.1 ms per 128-image batch; this costs 0.57 ms
    (2 CPU cores), CPU time the training step gets back.
    """
    count, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    top = tf.random.uniform([count], -pad, pad + 1, dtype=tf.int32)
    left = tf.random.uniform([count], -pad, pad + 1, dtype=tf.int32)
    rows = top[:, None] + tf.range(height)[None, :]
    cols = left[:, None] + tf.range(width)[None, :]
    if flip:
        mirrored = tf.random.uniform([count, 1]) < 0.5
        cols = tf.where(mirrored, tf.reverse(cols, axis=[1]), cols)
    images = tf.gather(images, reflect(rows, height), axis=1, batch_dims=1)
    return tf.gather(images, reflect(cols, width), axis=2, batch_dims=1)


def random_cutout(images: tf.Tensor, probability: float, fill: tuple[int, ...]) -> tf.Tensor:
    """Fill a random square (clipped at the borders) with the mean colour, in `probability` of images."""
    count, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    area = float(height * width)
    low, high = (round((fraction * area) ** 0.5) for fraction in CUTOUT_AREA)
    side = tf.random.uniform([count, 1, 1], low, high + 1, dtype=tf.int32)
    centre_y = tf.random.uniform([count, 1, 1], 0, height, dtype=tf.int32)
    centre_x = tf.random.uniform([count, 1, 1], 0, width, dtype=tf.int32)
    ys = tf.range(height)[None, :, None]
    xs = tf.range(width)[None, None, :]
    top, left = centre_y - side // 2, centre_x - side // 2
    inside = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)
    chosen = tf.random.uniform([count, 1, 1]) < probability
    mask = (inside & chosen)[..., None]
    return tf.where(mask, tf.constant(fill, dtype=images.dtype), images)


def augment_batch(images: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    if augmentation.crop:
        images = random_crop(images, augmentation.crop, flip=augmentation.flip)
    elif augmentation.flip:
        images = random_flip(images)
    if augmentation.cutout:
        images = random_cutout(images, augmentation.cutout, augmentation.fill)
    return images


def augment_dataset(dataset: tf.data.Dataset, augmentation: Augmentation) -> tf.data.Dataset:
    """Map the augmentation over a batched (images, labels) dataset; validation data never comes here."""
    if not augmentation.active:
        return dataset
    dataset = dataset.map(
        lambda images, labels: (augment_batch(images, augmentation), labels),
        num_parallel_calls=PARALLEL_CALLS,
    )
    return dataset.prefetch(PREFETCH_BATCHES)
