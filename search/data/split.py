"""Stratified, seeded train / validation / test splits."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import train_test_split

from search.data.source import RawData
from search.data.validate import check_class_counts
from search.errors import HyperCNNError

DEFAULT_CARVED_TEST = 0.1


@dataclasses.dataclass
class Splits:
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # "source": the data's own test split; "carved": held out of its training split.
    test_origin: str

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def _count(size: float | int, pool: int) -> int:
    return int(round(size * pool)) if isinstance(size, float) else int(size)


def _take(x: np.ndarray, y: np.ndarray, count: int, seed: int, what: str, class_names: list[str]):
    """Stratified: returns (taken, rest) as ((x, y), (x, y))."""
    if count >= len(y):
        raise HyperCNNError(
            f"the {what} asks for {count} images but only {len(y)} are left to take from; "
            "lower --train-size/--val-size/--test-size"
        )
    if count < len(class_names):
        raise HyperCNNError(
            f"the {what} would hold {count} images, fewer than the {len(class_names)} classes; "
            "raise its size so that every class appears"
        )
    try:
        x_rest, x_taken, y_rest, y_taken = train_test_split(
            x, y, test_size=count, stratify=y, random_state=seed, shuffle=True
        )
    except ValueError as exc:
        raise HyperCNNError(f"cannot split off the {what}: {exc}") from None
    return (x_taken, y_taken), (x_rest, y_rest)


def split_data(
    raw: RawData,
    seed: int,
    val_size: float | int | None = 0.1,
    test_size: float | int | None = None,
    train_size: float | int | None = None,
) -> Splits:
    """Test: the source's own split when it has one, else carved from train. Then validation, then
    (optionally) a smaller training subset, all stratified by class and seeded."""
    names = raw.class_names
    x, y = raw.x_train, raw.y_train
    pool = len(y)
    carve_test = not raw.has_test_split
    carved = 1 + int(carve_test) + 1  # train + validation (+ test)
    check_class_counts(
        y, names, carved, "the training data", "train/validation" + ("/test" if carve_test else "")
    )
    if carve_test:
        (x_test, y_test), (x, y) = _take(
            x, y, _count(test_size or DEFAULT_CARVED_TEST, pool), seed, "test split", names
        )
    else:
        x_test, y_test = raw.x_test, raw.y_test
        if test_size is not None:
            (x_test, y_test), _ = _take(
                x_test, y_test, _count(test_size, len(y_test)), seed, "test split", names
            )
    (x_val, y_val), (x, y) = _take(x, y, _count(val_size or 0.1, pool), seed + 1, "validation split", names)
    if train_size is not None and _count(train_size, pool) < len(y):
        (x, y), _ = _take(x, y, _count(train_size, pool), seed + 2, "training split", names)
    return Splits(names, x, y, x_val, y_val, x_test, y_test, "carved" if carve_test else "source")
