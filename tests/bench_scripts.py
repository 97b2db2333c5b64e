"""The bench/ scripts as modules for tests: bench/ is a folder of scripts, not a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_bench_script(name: str) -> ModuleType:
    """bench/<name>.py, loaded under the module name `bench_<name>`."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
