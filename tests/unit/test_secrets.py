"""Secret references: a rotation list keeps working when one of its entries cannot be read."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from chalicelib.errors import SecretResolutionError
from chalicelib.secrets import SecretResolver

RESOLVER = SecretResolver({"NEW": "new-secret", "OLD": "old-secret"})


def refs(*names: str) -> list[SecretStr]:
    return [SecretStr(f"env:{name}") for name in names]


def test_every_resolvable_secret_of_a_rotation_list_is_returned_in_order():
    assert RESOLVER.get_all(refs("NEW", "OLD")) == ["new-secret", "old-secret"]


def test_an_unreadable_entry_is_skipped_and_logged_by_name_only(caplog):
    with caplog.at_level(logging.WARNING, logger="chalicelib.secrets"):
        assert RESOLVER.get_all(refs("GONE", "NEW")) == ["new-secret"]
    [record] = caplog.records
    assert "GONE" in record.getMessage() and "new-secret" not in record.getMessage()


def test_a_list_with_nothing_resolvable_fails_as_a_503():
    with pytest.raises(SecretResolutionError) as caught:
        RESOLVER.get_all(refs("GONE", "ALSO_GONE"))
    assert caught.value.http_status == 503 and "GONE" in caught.value.message


def test_a_single_secret_still_fails_on_its_own():
    with pytest.raises(SecretResolutionError):
        RESOLVER.get(SecretStr("env:GONE"))
