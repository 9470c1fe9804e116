"""Replay windows: a signed timestamp must be recent, or the request is a replay (or the clocks
drifted, which is refused just the same)."""

from __future__ import annotations

import re
from datetime import datetime

from chalicelib.errors import SignatureError

_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def unix_seconds(value: str | None, *, field: str) -> int:
    """A header or field of unix seconds. Raises `SignatureError` naming `field`."""
    text = (value or "").strip()
    if not text:
        raise SignatureError(f"missing {field}")
    if not _UNIX_SECONDS.fullmatch(text):
        raise SignatureError(f"{field} must be unix seconds")
    return int(text)


def check_window(signed_at: float, now: datetime, *, max_age: float, max_future: float | None = None,
                 field: str, setting: str) -> None:
    """Raises `SignatureError` unless `signed_at` (unix seconds) is at most `max_age` seconds
    before `now` and at most `max_future` (default: `max_age`) after it. The message names the
    field and the setting that bounds it, and the distance, never the secret."""
    skew = now.timestamp() - signed_at
    ahead = max_age if max_future is None else max_future
    if skew > max_age or -skew > ahead:
        raise SignatureError(f"{field} is {int(abs(skew))} s away from our clock, outside the {setting} replay window")
