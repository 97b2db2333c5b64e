"""SearchConfig: the one config object, built once from flags or Python and written to config.json."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from search.errors import HyperCNNError
from search.objective import get_objective

# Here rather than in search.sampler, which imports Optuna: config.json is read without it.
SAMPLERS = ("random", "model")

CONFIG_FILE = "config.json"
DATA_ENV_VAR = "HYPERCNN_DATA"
DEFAULT_DATA = "cifar10"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text: str | float | int | None) -> float | None:
    """'15m' -> 900.0, '90s' -> 90.0, '1.5h' -> 5400.0, 120 -> 120.0; None/'none' -> None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none", "0")):
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise HyperCNNError(f"time budget {text!r} is not a duration; write it like 90s, 15m or 1.5h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "").lower() or None]
    if seconds <= 0:
        raise HyperCNNError(f"time budget must be positive; got {text!r}")
    return seconds


def parse_size(text: str | float | int | None, name: str) -> float | int | None:
    """A split size: an image count ('5000') or a fraction of the pool ('0.1')."""
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise HyperCNNError(
            f"{name} {text!r} is neither a count nor a fraction; give e.g. 5000 or 0.1"
        ) from None
    if value <= 0:
        raise HyperCNNError(f"{name} must be positive; got {text!r}")
    if value < 1:
        return value
    if value != int(value):
        raise HyperCNNError(f"{name} {text!r} must be a whole count or a fraction below 1")
    return int(value)


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); port 0 lets the system choose."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise HyperCNNError(f"{flag} {text!r} is not HOST:PORT; write it like 0.0.0.0:50051")
    return host, int(port)


# Hyperband iterations of a budgeted search with none given: more than any budget fits.
UNTIL_THE_DEADLINE = 10_000


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything a run depends on. Validated on construction; frozen afterwards."""

    data: str = DEFAULT_DATA
    # fast: the space built for small budgets; cnn is the classic baseline.
    space: str = "fast"
    out: str = "results/fast-seed0"
    # 9 epochs, factor 3: brackets of 1/3/9-epoch trials, sized so a 15-minute CPU search
    # finishes its first bracket and the winner's retrain still fits a small budget.
    max_epochs: int = 9
    factor: int = 3
    # None: with a time budget, new Hyperband iterations until it ends (at 45 minutes on 2 AVX512-BF16
    # cores one iteration ended after 7.8 of the 18 minutes the plan gave the search); without, one.
    hyperband_iterations: int | None = None
    seed: int = 0
    # The splits' seed when it must differ from the search's (bench: several search seeds, one split).
    split_seed: int | None = None
    time_budget_s: float | None = None
    overwrite: bool = False
    # Split sizes: a count of images or a fraction; None = the default for that split.
    train_size: float | int | None = None
    val_size: float | int | None = 0.1
    test_size: float | int | None = None
    batch_size: int = 128
    verify_md5: bool = True
    cache_dir: str = "~/.cache/hypercnn"
    # "auto" turns mixed precision and XLA on when a GPU is present, off on CPU.
    precision: str = "auto"
    jit_compile: str = "auto"
    # "auto": spaces.kernels times fused against stock kernels on this machine and keeps the faster.
    kernels: str = "auto"
    # Where the training split lives: "auto" (on the device with a GPU, or on JAX; spaces.kernels),
    # "host" (batches copied from the host each step) or "device" (spaces.device_loop).
    data_on: str = "auto"
    max_consecutive_failed_trials: int = 3
    # Keras progress output: "auto" = bar on a terminal, one line per epoch otherwise.
    progress: str = "auto"
    # The shipped model averages its predictions for each image and its mirror (spaces.inference),
    # when the winner trained with flips; costs twice the inference time.
    flip_averaging: bool = True
    # New configurations after the portfolio: "random" (KerasTuner's) or "model" (BOHB-style TPE,
    # search.sampler). The default is the one bench/search_quality.py measured better.
    sampler: str = "random"
    # What trials are ranked by; macro F1 for imbalanced data, where accuracy misleads.
    objective: str = "val_accuracy"
    # Training processes: "1" trains in this process; N > 1 or "auto" (one per visible GPU) starts a
    # chief and N workers (KerasTuner's chief/worker mode, search.chief).
    workers: str = "1"
    # Where the chief's gRPC service listens (HOST:PORT); None: loopback, a free port.
    listen: str | None = None
    # A running trial's lease: a worker that does not renew it for this long is taken as lost.
    lease_s: float = 60.0
    # Memory for finished trials' models kept for their promotions (variables and optimizer state).
    model_cache_mb: int = 256
    # Per-trial TensorBoard logs under the run folder's tensorboard/.
    tensorboard: bool = False

    def hyperband_sweeps(self) -> int:
        """The Hyperband iterations KerasTuner is given: the deadline ends a budgeted search."""
        if self.hyperband_iterations is not None:
            return self.hyperband_iterations
        return UNTIL_THE_DEADLINE if self.time_budget_s else 1

    def __post_init__(self) -> None:
        from spaces import list_spaces  # names only: no Keras, no TensorFlow

        if self.space not in list_spaces() and ":" not in self.space:
            raise HyperCNNError(
                f"unknown space {self.space!r}; choose one of {', '.join(list_spaces())} "
                "(hypercnn spaces lists them)"
            )
        if self.max_epochs < 1:
            raise HyperCNNError(f"--max-epochs must be at least 1; got {self.max_epochs}")
        if self.factor < 2:
            raise HyperCNNError(f"--factor must be at least 2; got {self.factor}")
        if self.hyperband_iterations is not None and self.hyperband_iterations < 1:
            raise HyperCNNError("--hyperband-iterations must be at least 1")
        if self.batch_size < 1:
            raise HyperCNNError(f"--batch-size must be at least 1; got {self.batch_size}")
        if self.precision not in ("auto", "float32", "mixed_float16", "mixed_bfloat16"):
            raise HyperCNNError(
                f"--precision {self.precision!r} is unknown; "
                "use auto, float32, mixed_float16 or mixed_bfloat16"
            )
        if self.kernels not in ("auto", "fused", "stock"):
            raise HyperCNNError(f"--kernels {self.kernels!r} is unknown; use auto, fused or stock")
        if self.data_on not in ("auto", "host", "device"):
            raise HyperCNNError(f"--data-on {self.data_on!r} is unknown; use auto, host or device")
        if self.jit_compile not in ("auto", "on", "off"):
            raise HyperCNNError(f"--jit-compile {self.jit_compile!r} is unknown; use auto, on or off")
        if self.progress not in ("auto", "bar", "epoch", "off"):
            raise HyperCNNError(f"--progress {self.progress!r} is unknown; use auto, bar, epoch or off")
        if self.sampler not in SAMPLERS:
            raise HyperCNNError(f"--sampler {self.sampler!r} is unknown; use {' or '.join(SAMPLERS)}")
        get_objective(self.objective)
        if self.workers != "auto" and not str(self.workers).isdigit():
            raise HyperCNNError(f"--workers {self.workers!r} is neither auto nor a count, e.g. 2")
        if self.workers == "0" and self.listen is None:
            raise HyperCNNError("--workers 0 trains nowhere; give --listen HOST:PORT for workers elsewhere")
        if self.listen is not None:
            parse_address(self.listen, "--listen")
        if self.lease_s is None or self.lease_s < 2:
            raise HyperCNNError(f"--lease-timeout must be at least 2 seconds; got {self.lease_s}")
        if self.model_cache_mb < 0:
            raise HyperCNNError(f"--model-cache-mb must be 0 or more; got {self.model_cache_mb}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise HyperCNNError("--time-budget must be positive")
        for name in ("train_size", "val_size", "test_size"):
            parse_size(getattr(self, name), "--" + name.replace("_", "-"))

    @classmethod
    def create(cls, data: str | None = None, **fields: Any) -> SearchConfig:
        """Build a config, falling back to $HYPERCNN_DATA and then to the Keras CIFAR-10 download."""
        # The only place the environment is read: everything downstream gets this object.
        data = data or os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA
        if "time_budget_s" in fields:
            fields["time_budget_s"] = parse_duration(fields["time_budget_s"])
        for name in ("train_size", "val_size", "test_size"):
            if name in fields:
                fields[name] = parse_size(fields[name], "--" + name.replace("_", "-"))
        if not fields.get("out"):
            fields["out"] = f"results/{fields.get('space', 'fast')}-seed{fields.get('seed', 0)}"
        return cls(data=data, **fields)

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, run_dir: Path | None = None) -> Path:
        path = Path(run_dir or self.run_dir) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> SearchConfig:
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise HyperCNNError(
                f"{run_dir} has no {CONFIG_FILE}: it is not a HyperCNN run folder; "
                "give the --out folder of a finished 'hypercnn search'"
            )
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise HyperCNNError(f"{path} is not valid JSON ({exc}); re-run the search") from None
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})

    def same_search_as(self, other: SearchConfig) -> list[str]:
        """Fields that make a resumed run a different search (budget and display may change)."""
        # The kernels compute the same function (tests/spaces check it), only at another speed.
        may_change = {
            "time_budget_s",
            "overwrite",
            "progress",
            "cache_dir",
            "out",
            "flip_averaging",
            "kernels",
            "data_on",
            "workers",
            "listen",
            "lease_s",
            "model_cache_mb",
            "tensorboard",
        }
        return [
            field.name
            for field in dataclasses.fields(self)
            if field.name not in may_change and getattr(self, field.name) != getattr(other, field.name)
        ]
