"""RawData: what every data source returns, before splitting."""

from __future__ import annotations

import dataclasses

import numpy as np

from search.data.validate import check_images, check_labels
from search.errors import HyperCNNError


@dataclasses.dataclass
class RawData:
    """Decoded images (uint8 N x H x W x 3) and labels, with the source's own test split if any."""

    kind: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        num_classes = len(self.class_names)
        self.x_train = check_images(self.x_train, f"{self.kind} training data")
        self.y_train = check_labels(
            self.y_train, num_classes, f"{self.kind} training data", count=len(self.x_train)
        )
        if self.x_test is not None:
            self.x_test = check_images(self.x_test, f"{self.kind} test data")
            self.y_test = check_labels(
                self.y_test, num_classes, f"{self.kind} test data", count=len(self.x_test)
            )
            if self.x_test.shape[1:] != self.x_train.shape[1:]:
                raise HyperCNNError(
                    f"test images are {self.x_test.shape[1:]}, training images "
                    f"{self.x_train.shape[1:]}; give both splits one size"
                )

    @property
    def has_test_split(self) -> bool:
        return self.x_test is not None
