"""Splits are stratified, seeded and disjoint; the config validates and round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.config import SearchConfig, parse_duration
from search.data.source import RawData
from search.data.split import split_data
from search.errors import HyperCNNError
from tests.conftest import make_images


def raw_data(per_class: int = 50) -> RawData:
    x, y = make_images(per_class, num_classes=5)
    # Tag every image with its index so disjointness can be checked exactly.
    x = x.copy()
    x[:, 0, 0, 0] = np.arange(len(x)) % 256
    x[:, 0, 0, 1] = np.arange(len(x)) // 256
    return RawData("test", [str(i) for i in range(5)], x, y)


def ids(x: np.ndarray) -> set[int]:
    return set((x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 0, 1].astype(int)).tolist())


def test_split_is_stratified_disjoint_and_seeded() -> None:
    raw = raw_data()
    splits = split_data(raw, seed=0, val_size=50, test_size=0.2, train_size=100)
    assert splits.sizes == {"train": 100, "validation": 50, "test": 50}
    for labels in (splits.y_train, splits.y_val, splits.y_test):
        counts = np.bincount(labels, minlength=5)
        assert counts.max() - counts.min() <= 1
    train, val, test = ids(splits.x_train), ids(splits.x_val), ids(splits.x_test)
    assert not (train & val or train & test or val & test)
    again = split_data(raw, seed=0, val_size=50, test_size=0.2, train_size=100)
    assert np.array_equal(again.x_test, splits.x_test)
    other = split_data(raw, seed=1, val_size=50, test_size=0.2, train_size=100)
    assert not np.array_equal(other.x_test, splits.x_test)


def test_split_asking_for_more_than_there_is() -> None:
    with pytest.raises(HyperCNNError, match="asks for 400 images but only"):
        split_data(raw_data(), seed=0, val_size=400, test_size=0.1)


def test_durations() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400
    assert parse_duration(None) is None


def test_config_round_trips_through_config_json(tmp_path: Path) -> None:
    config = SearchConfig.create(data="x.npz", out=str(tmp_path / "run"), time_budget_s="2m", val_size="0.2")
    config.save()
    loaded = SearchConfig.load(tmp_path / "run")
    assert loaded == config
    assert loaded.time_budget_s == 120 and loaded.val_size == 0.2


def test_data_falls_back_to_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HYPERCNN_DATA", "/data/cifar.zip")
    assert SearchConfig.create().data == "/data/cifar.zip"
    monkeypatch.delenv("HYPERCNN_DATA")
    assert SearchConfig.create().data == "cifar10"


def test_channel_statistics_match_numpy_on_the_training_split() -> None:
    from search.run import channel_statistics

    images = np.random.default_rng(0).integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
    images[..., 1] //= 4  # channels with different statistics
    mean, std = channel_statistics(images)
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-12)
