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


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), {"key": "k"}),                             # by keyword, a required field missing
    ((), {"key": "k", "owner": "o", "x": 1}),       # by keyword, one unknown
    (("k",), {"key": "again", "owner": "o"}),       # partly positional, one field twice
    (("k", "o", True), {"owner": "p"}),             # all positional and one again
])
def test_the_fast_paths_leave_every_error_to_the_checked_one(args, kwargs):
    with pytest.raises(TypeError):
        WriteDataclass(*args, **kwargs)
    with pytest.raises(TypeError):
        Write(*args, **kwargs)


def test_replace_copies_with_changes_like_dataclasses_replace():
    from chalicelib.domain.values import replace

    value = Write("k", "o")
    assert replace(value, owner="p") == Write("k", "p")
    assert value == Write("k", "o")
    with pytest.raises(TypeError):
        replace(value, unknown=1)


def test_a_record_is_mutable_compares_by_its_fields_with_those_it_extends_and_is_unhashable():
    from chalicelib.domain.values import Record

    class Plan(Record):
        __slots__ = ("case", "others")

        def __init__(self, case: str, others: list[str] | None = None) -> None:
            self.case = case
            self.others = [] if others is None else others

    class Detailed(Plan):
        __slots__ = ("why",)

        def __init__(self, case: str, why: str = "") -> None:
            super().__init__(case)
            self.why = why

    plan = Plan("c")
    plan.others.append("o")
    assert plan == Plan("c", ["o"]) and plan != Plan("c") and repr(plan).endswith(".Plan(case='c', others=['o'])")
    assert Detailed("c", "w") != Detailed("c", "x") and repr(Detailed("c")).endswith(".Detailed(case='c', others=[], why='')")
    assert plan != Detailed("c")
    with pytest.raises(TypeError):
        hash(plan)
    with pytest.raises(AttributeError):
        plan.unknown = 1  # type: ignore[attr-defined]


def test_settings_repr_leaves_out_the_environment_it_holds_secrets_in():
    from chalicelib.domain.values import replace
    from chalicelib.settings import Settings

    settings = Settings.from_environ({"HUB_STAGE": "prod", "HUB_SECRET": "s3cr3t"})
    assert "s3cr3t" not in repr(settings) and "stage='prod'" in repr(settings)
    assert replace(settings, stage="dev").environ["HUB_SECRET"] == "s3cr3t"
    assert Settings().environ == {}
