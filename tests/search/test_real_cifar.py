"""A quick search on the real CIFAR-10 training zip, where this machine has it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from search import run_search
from tests.conftest import CLASSES, SHARED_ZIP, quick_search_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,  # a 40 s budget on real images: run alone
    pytest.mark.skipif(not SHARED_ZIP.is_file(), reason=f"the CIFAR-10 zip is not at {SHARED_ZIP}"),
]
# From ../shared/data/README.md.
SHARED_ZIP_SHA256 = "f53123a1983f60791b25704d02a857d0a1bd232157249f4d55a9f4917dd5981c"


def test_quick_search_on_a_small_subset_of_the_real_zip(tmp_path: Path) -> None:
    config = quick_search_config(
        tmp_path,
        SHARED_ZIP,
        # Enough optimizer steps that the known-good first trial is past its warm-up: with
        # 600 images at batch 128 (5 steps an epoch) a 1-epoch trial can still sit at chance.
        train_size=1000,
        val_size=300,
        test_size=300,
        batch_size=32,
        max_epochs=3,
        factor=3,
        # The budget counts loading too: decoding the zip's 50,000 JPEGs took 24-35 s on 2 cores, and
        # at 40 s a CI run cut the first trial inside its only epoch (0.12, at chance).
        time_budget_s="60s",
    )
    result = run_search(config)
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["data"]["sha256"] == SHARED_ZIP_SHA256
    assert env["data"]["classes"] == CLASSES  # the official label order
    assert env["data"]["split_sizes"] == {"train": 1000, "validation": 300, "test": 300}
    assert env["data"]["test_origin"] == "carved"
    assert result.completed >= 1
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert trials["val_accuracy"].max() > 0.15  # chance is 0.10
