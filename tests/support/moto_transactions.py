"""Moto's `TransactWriteItems` with a rollback that costs what the transaction touches.

Moto 5 backs up a transaction by deep-copying every table it names, once per item of the
transaction, so a transaction's cost grows with the whole table: a soak of a few thousand
contacts spends most of its time copying tables (measured: 214 of 305 s at 300 messages).
The semantics the hub relies on are those of DynamoDB: every condition is checked and either
every write happens or none does. This replacement keeps them with a backup of only the items
the transaction names, and restores exactly those on a failure. It reuses moto's own code for
everything else (conditions, writes, the errors and their cancellation reasons), so a transaction
that fails under moto still fails here, with the same error.

Used by the long-running scenarios on moto only (`tests/integration/test_soak_aws.py`); the
other moto tests keep moto's implementation untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models import DynamoDBBackend


def _key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any] | None:
    """The primary key an operation addresses, as moto computes it (None when it cannot tell:
    moto raises the validation error itself then)."""
    try:
        if op_type == "Put":
            table = backend.get_table(op["TableName"])
            attributes = op["Item"]
            key = {table.hash_key_attr: attributes[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attributes[table.range_key_attr]
            return key
        return op["Key"]
    except Exception:
        return None


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    backups: list[tuple[str, dict[str, Any], Any]] = []
    for entry in transact_items:
        if len(entry) != 1:
            continue  # moto's own check raises for it below
        op_type, op = next(iter(entry.items()))
        key = _key(self, op_type, op)
        if key is None or op_type == "ConditionCheck" or op.get("TableName") not in self.tables:
            continue
        try:
            current = self.get_item(op["TableName"], key)
        except Exception:
            continue  # an invalid key: moto rejects the whole transaction without writing
        backups.append((op["TableName"], key, copy.deepcopy(current)))

    tables = self.tables
    # Moto's implementation, minus its whole-table copies: its backup holds the live tables, so
    # "restoring" them is a no-op and the items named above are restored instead.
    original_deepcopy = copy.deepcopy
    try:
        copy.deepcopy = _live_table_or_copy(tables, original_deepcopy)
        _MOTO_TRANSACT_WRITE_ITEMS(self, transact_items)
    except BaseException:
        copy.deepcopy = original_deepcopy
        for table_name, key, item in reversed(backups):
            table = self.get_table(table_name)
            if item is None:
                table.delete_item(hash_key=_attribute(key, table.hash_key_attr),
                                  range_key=_attribute(key, table.range_key_attr))
            else:
                table.put_item(item.to_json()["Attributes"])
        raise
    finally:
        copy.deepcopy = original_deepcopy


def _attribute(key: dict[str, Any], name: str | None):
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType(key[name]) if name is not None else None


def _live_table_or_copy(tables: dict, original):
    live = {id(table) for table in tables.values()}

    def deepcopy(value, memo=None, _nil=[]):  # noqa: B006 - copy.deepcopy's own signature
        if id(value) in live:
            return value
        return original(value, memo, _nil)

    return deepcopy


_MOTO_TRANSACT_WRITE_ITEMS = DynamoDBBackend.transact_write_items


@contextmanager
def item_level_transaction_backups() -> Iterator[None]:
    """Within the block, moto's transactions back up only the items they name."""
    DynamoDBBackend.transact_write_items = _transact_write_items
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = _MOTO_TRANSACT_WRITE_ITEMS
