"""The registry of searchable hypermodels: register_space, get_space, list_spaces.

Add your own (in another process too: ``--space mypackage.myspaces:mine`` imports
``mypackage.myspaces`` first, which registers "mine")::

    from spaces import register_space
    from spaces.base import SpaceHyperModel

    @register_space("mine")
    class MySpace(SpaceHyperModel):
        description = "what it is"

        def build_features(self, hp, x):
            ...  # Keras layers from preprocessed images to a feature vector
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spaces.base import SpaceHyperModel

_REGISTRY: dict[str, type[SpaceHyperModel]] = {}


def register_space(name: str) -> Callable[[type[SpaceHyperModel]], type[SpaceHyperModel]]:
    """Class decorator: make a SpaceHyperModel subclass findable as ``--space name``."""

    def register(cls: type[SpaceHyperModel]) -> type[SpaceHyperModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"space {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


# The built-in spaces, by module name: imported (with Keras) only when one is asked for, so that
# validating a config or printing --help needs no TensorFlow.
BUILT_IN_SPACES = ("cnn", "fast", "resnet")


def _import_built_in(name: str) -> None:
    if name in BUILT_IN_SPACES and name not in _REGISTRY:
        from search.quiet import load_keras_backend

        load_keras_backend()  # before Keras's first import, to hold back TensorFlow's start-up chatter
        importlib.import_module(f"spaces.{name}")  # registers itself


def get_space(name: str) -> type[SpaceHyperModel]:
    from search.errors import HyperCNNError

    if ":" in name:  # "module:registered name": a space of the user's own, registered on import
        module, name = name.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise HyperCNNError(
                f"space module {module!r} cannot be imported ({exc}); check --space"
            ) from None
    _import_built_in(name)
    if name not in _REGISTRY:
        raise HyperCNNError(
            f"unknown space {name!r}; choose one of {', '.join(list_spaces())} (hypercnn spaces)"
        )
    return _REGISTRY[name]


def list_spaces() -> list[str]:
    """Every space's name, built-in or registered, without importing Keras."""
    return sorted(set(BUILT_IN_SPACES) | set(_REGISTRY))


def load_spaces() -> dict[str, type[SpaceHyperModel]]:
    """Every space's class (imports the built-in spaces, and with them Keras)."""
    return {name: get_space(name) for name in list_spaces()}
