"""Explicit registration: one place lists every adapter; duplicate keys fail at import.

Nothing scans directories at runtime, so the set of providers and vendors is visible in code
review and costs nothing at cold start beyond importing these few small modules.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def register(*classes: type[T]) -> dict[str, type[T]]:
    registry: dict[str, type[T]] = {}
    for cls in classes:
        key = getattr(cls, "key")
        if key in registry:
            raise RuntimeError(f"two adapters register the key {key!r}: {registry[key].__name__} and {cls.__name__}")
        registry[key] = cls
    return registry
