"""Which GPUs a chief may hand to its workers, and how many workers a search runs: answered before
TensorFlow loads (the chief must hide every GPU from itself first)."""

from __future__ import annotations

import os
from pathlib import Path

from search.config import SearchConfig

# Set by the CLI before TensorFlow loads in the chief (which must see no GPU): the GPUs it may hand out.
VISIBLE_GPUS_ENV = "HYPERCNN_VISIBLE_GPUS"


def visible_gpus() -> list[str]:
    """GPU indices this process may hand to workers, without loading TensorFlow: CUDA_VISIBLE_DEVICES
    as the user set it, else the NVIDIA driver's list."""
    chosen = os.environ.get(VISIBLE_GPUS_ENV, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if chosen is not None:
        return [gpu for gpu in chosen.split(",") if gpu.strip() and gpu.strip() != "-1"]
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def hide_gpus_from_chief() -> None:
    """Before TensorFlow loads: the chief trains nothing, so it must not take GPU memory."""
    os.environ.setdefault(VISIBLE_GPUS_ENV, ",".join(visible_gpus()))
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def uses_chief(config: SearchConfig) -> bool:
    return config.listen is not None or worker_count(config) > 1


def worker_count(config: SearchConfig) -> int:
    """Local workers: 0 (with --listen) serves only workers on other machines."""
    if config.workers == "auto":
        return max(1, len(visible_gpus()))
    return int(config.workers)
