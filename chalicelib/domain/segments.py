"""Customer segments: which golden-record values the store indexes, and how they are compared.

A business event may select customers by an attribute (`customers.indexed_attributes`, at most
two: DynamoDB has one sparse index per slot). The store keeps one index entry per customer and
indexed attribute holding a scalar value; the event's selector values are normalized the same
way, so `"10115 "`, `"10115"` and `10115` select the same customers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: The longest index value kept: a DynamoDB index key holds 2048 bytes, and a segment is a short
#: label (a postcode, a region, a tariff), not a text.
MAX_INDEX_CHARS = 256


def index_value(value: Any) -> str | None:
    """The form a value is indexed and looked up by: text trimmed, case-folded and cut to
    `MAX_INDEX_CHARS`; None for what is not indexed (lists, objects, booleans, None, empty text),
    because one index entry holds one comparable value."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, float) and value.is_integer():
        # 10115.0 from a JSON number and 10115 from an integer are the same postcode.
        value = int(value)
    text = str(value).strip().casefold()[:MAX_INDEX_CHARS]
    return text or None


def indexed_values(customer: Any, attributes: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """The (slot, value) index entries of a customer: slot n + 1 for `attributes[n]`. No entries
    for a customer absorbed by a merge or being erased: the survivor holds its data, and an erased
    customer must not be found again."""
    if customer.merged_into is not None or customer.erasing:
        return ()
    entries: list[tuple[int, str]] = []
    for slot, name in enumerate(attributes, start=1):
        attribute = customer.attributes.get(name)
        value = index_value(attribute.value) if attribute is not None else None
        if value is not None:
            entries.append((slot, value))
    return tuple(entries)


def stored_index_entries(doc: str, attributes: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """`indexed_values` of a stored customer document (JSON), read without building the model:
    a reindex reads every customer."""
    customer = json.loads(doc)
    if customer.get("merged_into") or customer.get("erasing"):
        return ()
    stored = customer.get("attributes") or {}
    entries: list[tuple[int, str]] = []
    for slot, name in enumerate(attributes, start=1):
        attribute = stored.get(name)
        value = index_value(attribute.get("value")) if isinstance(attribute, dict) else None
        if value is not None:
            entries.append((slot, value))
    return tuple(entries)
