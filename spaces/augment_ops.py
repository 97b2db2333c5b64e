"""The recipe's augmentation, backend-neutral: what it is (Augmentation), and the same transforms in
keras.ops, run inside the compiled training step by a layer that is active only in training.

TensorFlow's CPU path augments uint8 batches in tf.data on the host (spaces.augment), where that is
cheapest. A GPU is starved by host-side augmentation, and the JAX backend has no tf.data, so there
the model's first layer does it on the device (``TrainingAugmentation``): horizontal flip,
pad-and-crop by up to ``crop`` pixels (reflect padding) and cutout, the same distributions as the
tf.data path (tests/spaces/test_augment_ops.py compares them). Exports drop the layer
(spaces.layers.to_stock_keras): a shipped model holds no augmentation.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

# Cutout's square covers 5 % to 15 % of the image, as the in-model RandomErasing does.
CUTOUT_AREA = (0.05, 0.15)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    flip: bool = True
    crop: int = 4  # pixels of reflect padding a random 32x32 window is cut back from
    cutout: float = 0.0  # probability per image
    fill: tuple[int, ...] = (125, 123, 114)  # cutout's fill: the training mean, 0 after standardising

    @property
    def active(self) -> bool:
        return self.flip or self.crop > 0 or self.cutout > 0


def reflect(index, size: int):
    """Pixel indices outside [0, size) mirrored back in, as reflect padding does (-1 -> 1)."""
    index = ops.abs(index)
    return ops.where(index >= size, 2 * (size - 1) - index, index)


def random_crop(images, pad: int, flip: bool, seed: keras.random.SeedGenerator):
    """A random window of each reflect-padded image, mirrored half the time if `flip`: two gathers
    of reflected row and column indices, no padded copy (as spaces.augment.random_crop)."""
    count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    top = keras.random.randint((count, 1), -pad, pad + 1, seed=seed, dtype="int32")
    left = keras.random.randint((count, 1), -pad, pad + 1, seed=seed, dtype="int32")
    rows = top + ops.arange(height, dtype="int32")[None, :]
    cols = left + ops.arange(width, dtype="int32")[None, :]
    if flip:
        mirrored = keras.random.uniform((count, 1), seed=seed) < 0.5
        cols = ops.where(mirrored, ops.flip(cols, axis=1), cols)
    images = ops.take_along_axis(images, reflect(rows, height)[:, :, None, None], axis=1)
    return ops.take_along_axis(images, reflect(cols, width)[:, None, :, None], axis=2)


def random_flip(images, seed: keras.random.SeedGenerator):
    flip = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=seed) < 0.5
    return ops.where(flip, ops.flip(images, axis=2), images)


def random_cutout(images, probability: float, fill: tuple[int, ...], seed: keras.random.SeedGenerator):
    """Fill a random square (clipped at the borders) with the mean colour, in `probability` of images."""
    count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    low, high = (round((fraction * height * width) ** 0.5) for fraction in CUTOUT_AREA)
    side = keras.random.randint((count, 1, 1), low, high + 1, seed=seed, dtype="int32")
    centre_y = keras.random.randint((count, 1, 1), 0, height, seed=seed, dtype="int32")
    centre_x = keras.random.randint((count, 1, 1), 0, width, seed=seed, dtype="int32")
    ys = ops.arange(height, dtype="int32")[None, :, None]
    xs = ops.arange(width, dtype="int32")[None, None, :]
    top, left = centre_y - side // 2, centre_x - side // 2
    inside = ops.logical_and(
        ops.logical_and(ys >= top, ys < top + side), ops.logical_and(xs >= left, xs < left + side)
    )
    chosen = keras.random.uniform((count, 1, 1), seed=seed) < probability
    mask = ops.expand_dims(ops.logical_and(inside, chosen), -1)
    return ops.where(mask, ops.cast(ops.convert_to_tensor(fill), images.dtype), images)


def augment_images(images, augmentation: Augmentation, seed: keras.random.SeedGenerator):
    if augmentation.crop:
        images = random_crop(images, augmentation.crop, augmentation.flip, seed)
    elif augmentation.flip:
        images = random_flip(images, seed)
    if augmentation.cutout:
        images = random_cutout(images, augmentation.cutout, augmentation.fill, seed)
    return images


@keras.saving.register_keras_serializable(package="hypercnn")
class TrainingAugmentation(keras.layers.Layer):
    """The recipe's augmentation on uint8 images inside the training step; identity at inference."""

    def __init__(
        self,
        flip: bool = True,
        crop: int = 4,
        cutout: float = 0.0,
        fill: tuple[int, ...] = (125, 123, 114),
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.augmentation = Augmentation(flip=flip, crop=crop, cutout=cutout, fill=tuple(fill))
        self.seed = seed
        # Its state is a layer variable: every backend, JAX's stateless steps included, advances it.
        self.seed_generator = keras.random.SeedGenerator(seed)
        # False: identity in training too (spaces.batch_stats's pass over clean images).
        self.active = True

    def call(self, images, training=None):
        if not (training and self.active):
            return images
        return augment_images(images, self.augmentation, self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), **dataclasses.asdict(self.augmentation), "seed": self.seed}
