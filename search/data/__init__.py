"""Data: every supported source, validated once, cached as uint8, split train/validation/test."""

from __future__ import annotations

from search.config import SearchConfig
from search.data.sources import detect_kind, load_raw
from search.data.split import Splits, split_data

__all__ = ["LoadedData", "Splits", "detect_kind", "load_data"]


class LoadedData:
    """The splits plus where they came from (for env.json and the report)."""

    def __init__(self, splits: Splits, kind: str, sha256: str) -> None:
        self.splits = splits
        self.kind = kind
        self.sha256 = sha256

    def describe(self) -> str:
        sizes = self.splits.sizes
        origin = (
            "the source's own test split"
            if self.splits.test_origin == "source"
            else "carved from the training data (the source has no test split)"
        )
        return (
            f"data: {self.kind}, {len(self.splits.class_names)} classes, "
            f"{'x'.join(map(str, self.splits.input_shape))} images; "
            f"train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']} "
            f"(test: {origin})"
        )


def load_data(config: SearchConfig) -> LoadedData:
    raw, sha256 = load_raw(config.data, config.cache_dir, verify_md5=config.verify_md5)
    splits = split_data(
        raw,
        seed=config.seed if config.split_seed is None else config.split_seed,
        val_size=config.val_size,
        test_size=config.test_size,
        train_size=config.train_size,
    )
    return LoadedData(splits, raw.kind, sha256)
