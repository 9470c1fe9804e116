"""The `x` identifier kind: X (Twitter) user ids, numeric and global."""

from __future__ import annotations

import pytest

from chalicelib.domain.identifiers import SCOPED_KINDS, Identifier, IdentifierKind, normalize, resolve_kind
from chalicelib.errors import InvalidIdentifierError
from chalicelib.domain.policies import IdentityPolicy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1221334455667788", "1221334455667788"),
        (" 3001969357 ", "3001969357"),
        ("0012", "12"),
        ("18446744073709551615", "18446744073709551615"),  # the largest 64-bit id
        ("\u00a03001969357\t", "3001969357"),
    ],
)
def test_x_ids_are_numeric_and_canonical(raw, expected):
    identifier = normalize("x", raw)
    assert (identifier.kind, identifier.value, identifier.scope) == (IdentifierKind.X, expected, None)
    assert identifier.key == f"x:{expected}"
    assert Identifier.parse(identifier.key) == identifier


def test_x_ids_are_global_so_a_scope_is_ignored():
    assert IdentifierKind.X not in SCOPED_KINDS
    assert normalize("x", "42", scope="app-1") == normalize("x", "42") == normalize(IdentifierKind.X, "42")
    assert Identifier.parse("x:42").key == "x:42"


@pytest.mark.parametrize(
    "raw",
    ["@anasouza", "anasouza", "12a", "-100", "1 2", "1.5", "+42", "\u0661\u0662", "1" * 21, "x:42"],
)
def test_handles_and_other_non_numeric_values_are_rejected(raw):
    with pytest.raises(InvalidIdentifierError, match="x ids are numeric"):
        normalize("x", raw)


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_x_id_is_rejected(raw):
    with pytest.raises(InvalidIdentifierError, match="empty x identifier"):
        normalize("x", raw)


def test_the_error_never_contains_the_value():
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize("x", "@secret_handle")
    assert "secret_handle" not in caught.value.message


@pytest.mark.parametrize("spelling", ["x", "X", " x "])
def test_kind_spellings(spelling):
    assert resolve_kind(spelling) is IdentifierKind.X


def test_x_ids_link_by_default_after_the_other_channel_ids():
    # An X user id is authenticated by X and the same for every app: safe to link on, and the
    # lowest priority, so a phone, email or CRM id still decides when identifiers disagree.
    kinds = IdentityPolicy().link_kinds
    assert kinds[-1] is IdentifierKind.X
    assert kinds.index(IdentifierKind.X) > kinds.index(IdentifierKind.PHONE)
