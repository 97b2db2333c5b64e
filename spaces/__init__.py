"""The registry of searchable hypermodels: register_space, get_space, list_spaces.

Add your own::

    from spaces import register_space
    from spaces.base import SpaceHyperModel

    @register_space("mine")
    class MySpace(SpaceHyperModel):
        description = "what it is"

        def build_features(self, hp, x):
            ...  # Keras layers from preprocessed images to a feature vector
"""

from __future__ import annotations

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


def get_space(name: str) -> type[SpaceHyperModel]:
    from search.errors import HyperCNNError

    if name not in _REGISTRY:
        raise HyperCNNError(
            f"unknown space {name!r}; choose one of {', '.join(list_spaces())} (hypercnn spaces)"
        )
    return _REGISTRY[name]


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)


# Built-in spaces register themselves on import.
from spaces import cnn, fast, resnet  # noqa: E402,F401
