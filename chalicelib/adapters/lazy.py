"""A registry whose keys are known at import and whose classes are imported on first use.

The webhook function serves one provider per request: importing every provider's adapter (and
every connector) at start-up cost most of the cold start. A `LazyRegistry` names each class by
its module, so `key in registry` and `sorted(registry)` cost nothing and `registry[key]` imports
that one module. `.values()` / `.items()` import everything: for tools and tests, not hot paths.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class LazyRegistry(Mapping[str, Any]):
    def __init__(self, kind: str, paths: dict[str, str], *, keyed: bool = True) -> None:
        """`paths` maps each key to `"package.module:ClassName"`; the class's `key` must match,
        unless `keyed` is false (settings models, which do not name their provider)."""
        self._kind = kind
        self._paths = dict(paths)
        self._keyed = keyed
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        loaded = self._loaded.get(key)
        if loaded is None:
            module, _, name = self._paths[key].partition(":")  # KeyError for an unknown key
            loaded = getattr(importlib.import_module(module), name)
            if self._keyed and getattr(loaded, "key", None) != key:
                raise RuntimeError(f"{self._kind} {self._paths[key]} is registered as {key!r} but its key is "
                                   f"{getattr(loaded, 'key', None)!r}")
            self._loaded[key] = loaded
        return loaded

    def __contains__(self, key: object) -> bool:
        return key in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def loaded(self) -> list[str]:
        """The keys imported so far (tests and start-up diagnostics)."""
        return sorted(self._loaded)
