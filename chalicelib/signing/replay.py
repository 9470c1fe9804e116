"""A memory of tokens already used, for signatures that do not cover the body.

Mailgun signs `timestamp + token`, not the message: whoever captures one signed request could
send any other body with its triple within the replay window. Each token may therefore be used
once, with one body; the provider's retry of the same request (same token, same body) is still
accepted, so a 5xx answered to a webhook never loses its message. The memory is the hub's store
(one conditional write, kept until the window closes), so the check holds across every Lambda
container; an in-process memory serves where no store is wired (adapter unit tests).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime


class ReplayGuard(ABC):
    """Raises nothing: `first_use` answers whether a token may be accepted."""

    @abstractmethod
    def first_use(self, scope: str, token: str, *, fingerprint: str, expires_at: datetime, now: datetime) -> bool:
        """True the first time `token` is presented in `scope`, and again when it comes back with
        the same `fingerprint` (a retry of the same request); False when it was used with another
        (a replay). Remembered until `expires_at`, judged at `now` (the hub's clock)."""


class StoreReplayGuard(ReplayGuard):
    """Tokens remembered in the hub's store (`Store.remember`): shared by every process."""

    def __init__(self, store: Callable[[], object]) -> None:
        self._store = store

    def first_use(self, scope: str, token: str, *, fingerprint: str, expires_at: datetime, now: datetime) -> bool:
        earlier = self._store().remember(f"replay:{scope}:{token}", value=fingerprint, expires_at=expires_at, now=now)
        return earlier is None or earlier == fingerprint


class MemoryReplayGuard(ReplayGuard):
    """Tokens remembered in this process only, bounded (the oldest forgotten first)."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def first_use(self, scope: str, token: str, *, fingerprint: str, expires_at: datetime, now: datetime) -> bool:
        key = f"{scope}:{token}"
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                return entry[0] == fingerprint
            self._entries[key] = (fingerprint, expires_at)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return True
