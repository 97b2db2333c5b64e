"""A small image task for comparing training paths, importable on every backend (no TensorFlow)."""

from __future__ import annotations

import numpy as np

# Four classes whose mean colours differ by 40 levels along one channel; each image's colour is
# shifted at random (sd 20) and its pixels are noisy: the classes overlap, so neither path can reach
# 100 % and a difference between them would show. Flips, crops and cutout keep the label.
CLASS_COLOURS = np.array([[100, 100, 100], [140, 100, 100], [100, 140, 100], [100, 100, 140]])


def overlapping_colours(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    colours = CLASS_COLOURS[labels] + rng.normal(0, 20, (count, 3))
    images = colours[:, None, None, :] + rng.normal(0, 30, (count, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels
