"""HyperCNN: find, train and ship the best CNN for an image-classification data set.

The public API::

    from search import SearchConfig, run_search, make_report, load_model
"""

from __future__ import annotations

from search.config import SearchConfig
from search.errors import HyperCNNError

__all__ = ["HyperCNNError", "SearchConfig", "load_model", "make_report", "run_search"]


def __getattr__(name: str):
    # Lazy: `hypercnn --help` and config validation should not pay for importing TensorFlow.
    if name in ("run_search", "make_report", "load_model"):
        from search.quiet import load_keras_backend

        load_keras_backend()  # first, so that its start-up chatter is held back
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
