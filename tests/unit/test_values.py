"""`Value` (chalicelib/domain/values.py) behaves as the frozen dataclass it replaces, for the
store's records (`adapters/store/records.py`): construction, defaults, equality, hashing, repr,
immutability and `match` patterns, checked side by side with a real frozen dataclass."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from chalicelib.domain.values import Value


class Write(Value):
    key: str
    owner: str
    allow_same_owner: bool = True


@dataclasses.dataclass(frozen=True)
class WriteDataclass:
    key: str
    owner: str
    allow_same_owner: bool = True


CONSTRUCTIONS = [
    (("k", "o"), {}),
    (("k",), {"owner": "o"}),
    ((), {"key": "k", "owner": "o", "allow_same_owner": False}),
    (("k", "o", False), {}),
]


@pytest.mark.parametrize(("args", "kwargs"), CONSTRUCTIONS)
def test_constructs_repr_eq_and_hash_like_a_frozen_dataclass(args, kwargs):
    value, reference = Write(*args, **kwargs), WriteDataclass(*args, **kwargs)
    assert (value.key, value.owner, value.allow_same_owner) == dataclasses.astuple(reference)
    assert repr(value) == repr(reference).replace("WriteDataclass", "Write")
    assert hash(value) == hash(reference)
    assert value == Write(*args, **kwargs)
    assert value != Write("other", "o")


@pytest.mark.parametrize(("args", "kwargs"), [
    (("k",), {}),                                   # missing a required field
    (("k", "o", True, "extra"), {}),                # too many positional
    (("k", "o"), {"key": "again"}),                 # one field twice
    (("k", "o"), {"unknown": 1}),                   # no such field
])
def test_refuses_what_a_dataclass_refuses(args, kwargs):
    with pytest.raises(TypeError):
        WriteDataclass(*args, **kwargs)
    with pytest.raises(TypeError):
        Write(*args, **kwargs)


def test_is_frozen():
    value = Write("k", "o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.key = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.owner  # type: ignore[misc]
    assert value.key == "k"


def test_equality_needs_the_same_type():
    class Other(Value):
        key: str
        owner: str
        allow_same_owner: bool = True

    assert Write("k", "o") != Other("k", "o")
    assert Write("k", "o") != ("k", "o", True)
    assert len({Write("k", "o"), Write("k", "o"), Write("k", "p")}) == 2


def test_match_by_keyword_and_position():
    match Write("k", "o", allow_same_owner=False):
        case Write(key="k", allow_same_owner=True):
            found = "wrong"
        case Write("k", owner, allow_same_owner=False):
            found = owner
    assert found == "o"


def test_defaults_must_come_last_and_values_do_not_extend_values():
    with pytest.raises(TypeError):
        class _Bad(Value):
            first: int = 1
            second: int

    with pytest.raises(TypeError):
        class _Extends(Write):
            more: int = 0


def test_store_records_keep_their_fields_and_defaults():
    from chalicelib.adapters.store.records import ClaimIdentifier, MarkDone, PutContact, Remembered

    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert PutContact("c1", "u1", "{}") == PutContact(contact_id="c1", customer_id="u1", doc="{}", only_new=False)
    assert MarkDone("k", at).unless_done_at is None
    assert ClaimIdentifier("phone:+1", "u1").allow_same_owner is True
    assert Remembered.__match_args__ == ("key", "value", "expires_at")
