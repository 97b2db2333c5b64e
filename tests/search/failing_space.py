"""Test-only spaces whose n-th training raises, as a GPU running out of memory or a Ctrl-C would."""

from __future__ import annotations

from collections.abc import Callable

from spaces.cnn import ClassicCNN


def space_failing_at_fit(failing_fit: int, error: Callable[[], BaseException], description: str) -> type:
    """The classic CNN, whose `failing_fit`-th fit in this process raises `error()` (`fits` counts)."""

    class FailingSpace(ClassicCNN):
        fits = 0

        def fit(self, hp, model, *args, **kwargs):
            FailingSpace.fits += 1
            if FailingSpace.fits == failing_fit:
                raise error()
            return super().fit(hp, model, *args, **kwargs)

    FailingSpace.description = description
    return FailingSpace
