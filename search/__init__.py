"""HyperCNN: find, train and ship the best CNN for an image-classification data set.

The public API::

    from search import SearchConfig, run_search, make_report, load_model
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) drowns the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from search.config import SearchConfig  # noqa: E402
from search.errors import HyperCNNError  # noqa: E402

__all__ = ["HyperCNNError", "SearchConfig", "load_model", "make_report", "run_search"]


def __getattr__(name: str):
    # Lazy: `hypercnn --help` and config validation should not pay for importing TensorFlow.
    if name == "run_search":
        from search.run import run_search

        return run_search
    if name == "make_report":
        from search.report import make_report

        return make_report
    if name == "load_model":
        from search.predict import load_model

        return load_model
    raise AttributeError(f"module 'search' has no attribute {name!r}")
