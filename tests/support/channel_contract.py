"""What a channel adapter's row in the shared contract suite is made of, and the strategies rows
use to generate plausible payloads. Providers add rows from tests/contract/channels/<key>.py
(a module-level `CASE = Case(...)`), so adding a channel never edits the suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.support.fixtures import load as load_fixture


@dataclass(frozen=True)
class Case:
    settings: dict[str, Any]
    #: Every secret value in `settings`: none may show in a repr, str or dump.
    secret_values: tuple[str, ...]
    hook: str | None
    sample: bytes
    sample_headers: dict[str, str]
    #: Headers that make any body correctly signed, as the provider (or site backend) would.
    sign: Callable[[bytes], dict[str, str]]
    #: The sample body changed in a way its credential covers.
    #: None for a credential that covers no byte of the body (a shared secret header, as
    #: Telegram sends): no body change can fail verification, so there is nothing to tamper.
    tamper: Callable[[bytes], bytes] | None
    #: The sample without its credential: (body, headers).
    strip: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]
    #: True when the credential covers the whole body, so any other body must fail verify().
    body_signed: bool
    #: Plausible structured bodies (right shape, wrong details) for property tests.
    payloads: st.SearchStrategy[bytes]
    #: A body (signed by `sign`) of an event type the adapter does not know: it must be
    #: acknowledged and kept raw, never a contact and never an error. None only for providers
    #: with a single kind of request (`UNKNOWN_EXEMPT` in the suite says why).
    unknown: bytes | None = None


def fixture(provider: str, name: str) -> tuple[bytes, dict[str, str]]:
    stored = load_fixture(provider, name)
    return stored.body, dict(stored.headers)


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


# --- shared strategies -------------------------------------------------------------------------

# Lone surrogates included: JSON can carry them as \u escapes although UTF-8 cannot.
TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=24)
LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
#: Text a well-behaved client sends (no lone surrogates, not blank).
WORDS = st.text(min_size=1, max_size=40).filter(str.strip)
JSON = st.recursive(LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=10)


def mostly(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = LEAF) -> st.SearchStrategy[Any]:
    """The valid shape about nine times in ten, so the property tests reach the parser's success path.

    (`st.one_of(valid, valid, wrong)` does not weight: repeated branches count once.)
    """
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: valid if ok else wrong)


def known_objects(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON whose objects mostly use the provider's own key names, so parsing gets past the shape checks."""
    names = st.sampled_from(keys) | TEXT
    return st.recursive(LEAF, lambda c: st.dictionaries(names, c, max_size=4) | st.lists(c, max_size=2), max_leaves=10)


