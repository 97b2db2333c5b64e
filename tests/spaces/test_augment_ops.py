"""Augmentation inside the training step (keras.ops, any backend) does what the tf.data path does.

Runs on TensorFlow, where it is also compared with the tf.data path, and on JAX (`make test`'s
backend-neutral part), where only its own statistics are checked.
"""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from spaces import get_space
from spaces.augment_ops import Augmentation, TrainingAugmentation, augment_images
from spaces.base import DataSpec
from spaces.kernels import Kernels
from spaces.layers import to_stock_keras

pytestmark = pytest.mark.backend_neutral

COUNT = 3000
ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def coordinate_images(count: int) -> np.ndarray:
    """Each pixel says where it is: channel 0 its row, channel 1 its column, channel 2 200."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([rows, cols, np.full((32, 32), 200)], axis=-1).astype(np.uint8)
    return np.repeat(image[None], count, axis=0)


def step_augment(images: np.ndarray, augmentation: Augmentation) -> np.ndarray:
    seed = keras.random.SeedGenerator(7)
    return np.asarray(keras.ops.convert_to_numpy(augment_images(images, augmentation, seed)))


def pipeline_augment(images: np.ndarray, augmentation: Augmentation) -> np.ndarray:
    import tensorflow as tf

    from spaces.augment import augment_batch

    tf.random.set_seed(7)
    return augment_batch(tf.constant(images), augmentation).numpy()


IMPLEMENTATIONS = {"step": step_augment}
if ON_TENSORFLOW:
    IMPLEMENTATIONS["pipeline"] = pipeline_augment


def reflect(index: np.ndarray, size: int = 32) -> np.ndarray:
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


def decode_crops(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top, left, mirrored) of each output window, read off the coordinates its pixels carry."""
    rows = out[:, :, 0, 0].astype(int)
    top = np.where(rows[:, 1] > rows[:, 0], rows[:, 0], -rows[:, 0])
    cols = out[:, 0, :, 1].astype(int)
    mirrored = cols[:, 0] > 15
    cols = np.where(mirrored[:, None], cols[:, ::-1], cols)
    left = np.where(cols[:, 1] > cols[:, 0], cols[:, 0], -cols[:, 0])
    return top, left, mirrored


@pytest.mark.parametrize("path", IMPLEMENTATIONS)
def test_crops_are_reflect_padded_windows_at_uniform_offsets_mirrored_half_the_time(path: str) -> None:
    images = coordinate_images(COUNT)
    out = IMPLEMENTATIONS[path](images, Augmentation(flip=True, crop=4, cutout=0.0))
    top, left, mirrored = decode_crops(out)
    # Every output pixel is the input pixel at the reflected, offset (and maybe mirrored) position.
    steps = np.arange(32)
    expected_rows = reflect(top[:, None] + steps)
    expected_cols = reflect(left[:, None] + steps)
    expected_cols = np.where(mirrored[:, None], expected_cols[:, ::-1], expected_cols)
    np.testing.assert_array_equal(out[:, :, :, 0], np.repeat(expected_rows[:, :, None], 32, axis=2))
    np.testing.assert_array_equal(out[:, :, :, 1], np.repeat(expected_cols[:, None, :], 32, axis=1))
    # Offsets -4..4 equally likely (1/9 each: 333 of 3,000, sd 17), mirrored half the time (sd 27).
    for offsets in (top, left):
        counts = np.bincount(offsets + 4, minlength=9)
        assert len(counts) == 9 and np.all(np.abs(counts - COUNT / 9) < 80), counts
    assert abs(mirrored.sum() - COUNT / 2) < 130


@pytest.mark.parametrize("path", IMPLEMENTATIONS)
def test_cutout_fills_a_square_of_5_to_15_percent_in_the_chosen_share_of_images(path: str) -> None:
    images = np.full((COUNT, 32, 32, 3), 7, np.uint8)
    fill = (125, 123, 114)
    out = IMPLEMENTATIONS[path](images, Augmentation(flip=False, crop=0, cutout=0.5, fill=fill))
    filled = np.all(out == np.array(fill, np.uint8), axis=-1)
    assert np.all(filled | np.all(out == 7, axis=-1))  # every pixel is either untouched or the fill
    area = filled.mean(axis=(1, 2))
    assert abs((area > 0).sum() - COUNT / 2) < 130
    # Squares of side 7..12 (5-15 % of 1,024 pixels) centred anywhere, clipped at the borders.
    assert area.max() <= 144 / 1024 and np.median(area[area > 0]) > 0.03
    rows_hit, cols_hit = filled.any(axis=2), filled.any(axis=1)
    assert np.all(filled.sum(axis=(1, 2)) == rows_hit.sum(axis=1) * cols_hit.sum(axis=1))  # rectangles


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the tf.data path exists on TensorFlow only")
def test_both_paths_draw_the_same_distributions() -> None:
    crops = Augmentation(flip=True, crop=4, cutout=0.0)
    step, pipeline = (
        decode_crops(IMPLEMENTATIONS[path](coordinate_images(COUNT), crops)) for path in ("step", "pipeline")
    )
    for ours, theirs in zip(step, pipeline, strict=True):
        assert abs(ours.mean() - theirs.mean()) < 0.15 and abs(ours.std() - theirs.std()) < 0.15
    cutout = Augmentation(flip=False, crop=0, cutout=0.5)
    areas = [
        (IMPLEMENTATIONS[path](np.full((COUNT, 32, 32, 3), 7, np.uint8), cutout) != 7).any(-1).mean((1, 2))
        for path in ("step", "pipeline")
    ]
    assert abs(areas[0].mean() - areas[1].mean()) < 0.005  # both about 0.045 (half the images, clipped)


def test_the_layer_augments_only_in_training_and_exports_drop_it() -> None:
    keras.utils.set_random_seed(0)
    space = get_space("fast")(
        DataSpec(num_classes=4, train_size=32, batch_size=32),
        fit_verbose=0,
        kernels=Kernels.backend_neutral(),
    )
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    model = space.build(hp)
    layer = model.get_layer("augment")
    assert isinstance(layer, TrainingAugmentation) and layer.augmentation == space.augmentation(hp)
    images = coordinate_images(32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    assert np.any(keras.ops.convert_to_numpy(layer(images, training=True)) != images)
    shipped = to_stock_keras(model)
    assert not any(isinstance(each, TrainingAugmentation) for each in shipped.layers)
    np.testing.assert_allclose(
        shipped.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


def test_a_gpu_moves_the_data_and_augmentation_into_the_training_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GPU here: the lookup is replaced to say one is present; the choice after it is the real one."""
    from search import hardware
    from spaces.kernels import select_kernels

    assert select_kernels("float32", None, "stock").augmentation == Kernels.for_backend().augmentation
    monkeypatch.setattr(hardware, "detect_gpus", lambda: ["/device:GPU:0"])
    on_gpu = select_kernels("float32", None, "stock")
    assert on_gpu.augmentation == "step" and on_gpu.data == "device" and on_gpu.batch_norm == "stock"
