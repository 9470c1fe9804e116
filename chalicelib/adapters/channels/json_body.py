"""JSON webhook bodies, read the same way by every provider that posts JSON (Meta, Slack,
Telegram, X).

Strict where the queue needs it: the body must be UTF-8 and a JSON object, and NaN or Infinity
(not JSON, but accepted by Python's parser) are refused. Lone surrogates are valid as JSON
escapes but cannot be encoded as UTF-8, so `clean` replaces them before anything is queued; and
absurd nesting is refused, because pydantic stops serializing near 200 levels while real
payloads are under a dozen deep.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from chalicelib.errors import MalformedPayloadError

SURROGATES = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 48


class TooDeepError(Exception):
    """A value nests deeper than `MAX_DEPTH`; the message says so."""


def load_object(body: bytes, *, finite_floats: bool = False) -> dict:
    """The body as a JSON object. With `finite_floats`, `1e999` (infinity) is refused too.
    Raises `MalformedPayloadError` (400)."""
    try:
        data = (_FINITE_DECODER if finite_floats else _DECODER).decode(body.decode("utf-8"))
    except (ValueError, RecursionError):  # also UnicodeDecodeError, and ints over the digit limit
        raise MalformedPayloadError("body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayloadError("body is not a JSON object")
    return data


def load_clean_object(body: bytes) -> dict:
    """`load_object`, then `clean` over the whole body, for providers that send one event per
    request. Raises `MalformedPayloadError` (400), for a body nested too deep as well."""
    try:
        return clean(load_object(body))
    except TooDeepError as exc:
        raise MalformedPayloadError(f"body is {exc}") from None


def clean(value: Any, depth: int = 0) -> Any:
    """A copy safe to put on the queue: lone surrogates become U+FFFD. Raises `TooDeepError`."""
    if depth > MAX_DEPTH:
        raise TooDeepError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(k, depth + 1): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value]
    return value


def safe(value: Any) -> Any:
    """A provider string fit for a reason or an id: lone surrogates replaced; anything else as is."""
    return SURROGATES.sub("\ufffd", value) if isinstance(value, str) else value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # `1e999` parses as infinity, which JSON cannot carry back out on the queue.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


#: What `json.loads(text, parse_constant=…, parse_float=…)` builds anew on every call (a third of
#: the cost of loading a typical webhook), built once: decoders keep no state between calls.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_FINITE_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def text_of(obj: Any, key: str) -> str | None:
    """A string field, or an integer one as text (ids and codes come either way); else None."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def string_of(obj: Any, key: str) -> str | None:
    """A text field (message text, a title, an emoji): only a non-empty string counts."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None
