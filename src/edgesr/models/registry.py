"""A name -> builder registry that refuses duplicates (BasicSR ``basicsr/utils/registry.py``).

Architectures register their builder under the ``type`` name of their config class, by explicit
import in :mod:`edgesr.models` (STYLE.md point 4), so the set of names is fixed at import time and a
typo in ``params.yaml`` fails with the list of names that exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from torch import nn

__all__ = ["MODEL_REGISTRY", "DuplicateNameError", "Registry", "UnknownNameError"]

T = TypeVar("T")


class DuplicateNameError(ValueError):
    """A name was registered twice."""


class UnknownNameError(KeyError):
    """A name that is not registered was looked up."""

    def __str__(self) -> str:
        # KeyError's default str() is the repr of its argument; print the message as written.
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (here: model builders); a name can be registered only once.

    Usage, as a decorator::

        @MODEL_REGISTRY.register("fsrcnn")
        def build_fsrcnn(cfg: FSRCNNConfig, scale: int) -> FSRCNN: ...
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name`` and returns it unchanged."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise DuplicateNameError(
                    f"{name!r} is already registered in the {self._name} registry "
                    f"(by {self._entries[name]!r}); register the new entry under another name"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry registered under ``name``; the error lists every registered name."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.names())
            raise UnknownNameError(f"no {self._name} named {name!r}; registered names: {known}") from None

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, names={list(self.names())})"


# Builders take the architecture's config object and the integer scale, and return the model.
MODEL_REGISTRY: Registry[Callable[[Any, int], nn.Module]] = Registry("model")
