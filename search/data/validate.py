"""Checks at the data boundary, each failing with one line that names the place and the fix."""

from __future__ import annotations

import numpy as np

from search.errors import HyperCNNError


def check_images(x: np.ndarray, where: str) -> np.ndarray:
    """Images must be uint8, N x H x W x 3."""
    if not isinstance(x, np.ndarray):
        raise HyperCNNError(f"images in {where} are a {type(x).__name__}, not an array")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise HyperCNNError(
            f"images in {where} have shape {x.shape}; expected N x H x W x 3 (RGB, channels last)"
        )
    if x.dtype != np.uint8:
        raise HyperCNNError(
            f"images in {where} are {x.dtype}; expected uint8 pixels 0..255 (convert with "
            "np.clip(x, 0, 255).astype('uint8'))"
        )
    if len(x) == 0:
        raise HyperCNNError(f"{where} holds no images")
    return x


def check_labels(y: object, num_classes: int, where: str, count: int | None = None) -> np.ndarray:
    """Labels must be integers in 0..num_classes-1, one per image."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise HyperCNNError(
            f"labels in {where} have shape {labels.shape}; expected one integer label per image"
        )
    if labels.dtype.kind not in "iu":
        raise HyperCNNError(f"labels in {where} are {labels.dtype}; expected integer class indices")
    if count is not None and len(labels) != count:
        raise HyperCNNError(f"{where} has {count} images but {len(labels)} labels; give one label per image")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        index = int(bad[0])
        raise HyperCNNError(
            f"labels must be in 0..{num_classes - 1}; found {int(labels[index])} at index {index} in {where}"
        )
    return labels.astype(np.int64)


def check_same_image_size(shapes: list[tuple[int, ...]], names: list[str]) -> None:
    """All images in a data set must share one size: name the first that does not."""
    expected = shapes[0]
    for shape, name in zip(shapes, names, strict=True):
        if shape != expected:
            raise HyperCNNError(
                f"image {name} is {shape[1]}x{shape[0]} but {names[0]} is "
                f"{expected[1]}x{expected[0]}; resize all images to one size"
            )


def check_class_counts(y: np.ndarray, class_names: list[str], needed: int, where: str, what: str) -> None:
    """Every class needs enough images to appear in every split."""
    counts = np.bincount(y, minlength=len(class_names))
    for index, count in enumerate(counts):
        if count < needed:
            raise HyperCNNError(
                f"class {class_names[index]!r} has {count} image(s) in {where}; "
                f"at least {needed} are needed to split it into {what}: add images or drop the class"
            )
