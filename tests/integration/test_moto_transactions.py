"""The soak's faster moto transactions (`tests/support/moto_transactions.py`) keep DynamoDB's
all-or-nothing semantics: every scenario ends in the same table and the same error as moto's own
implementation."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.support.aws import create_table
from tests.support.moto_transactions import item_level_transaction_backups

TABLE = "hub-tx"


def _item(pk: str, sk: str = "A", **attributes: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **{name: {"S": value} for name, value in attributes.items()}}


def _key(pk: str, sk: str = "A") -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


SCENARIOS = {
    "all writes pass": [
        {"Put": {"TableName": TABLE, "Item": _item("new", v="1")}},
        {"Update": {"TableName": TABLE, "Key": _key("old"), "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "2"}}}},
        {"Delete": {"TableName": TABLE, "Key": _key("gone")}},
    ],
    "a failing condition check undoes a put, an update and a delete": [
        {"Put": {"TableName": TABLE, "Item": _item("new", v="1")}},
        {"Update": {"TableName": TABLE, "Key": _key("old"), "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "2"}}}},
        {"Delete": {"TableName": TABLE, "Key": _key("gone")}},
        {"ConditionCheck": {"TableName": TABLE, "Key": _key("guard"), "ConditionExpression": "attribute_not_exists(pk)"}},
    ],
    "a failing conditional put after writes undoes them": [
        {"Update": {"TableName": TABLE, "Key": _key("old"), "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "3"}}}},
        {"Put": {"TableName": TABLE, "Item": _item("gone", v="x"), "ConditionExpression": "attribute_not_exists(pk)"}},
    ],
    "two operations on one item are refused whole": [
        {"Put": {"TableName": TABLE, "Item": _item("new", v="1")}},
        {"Update": {"TableName": TABLE, "Key": _key("new"), "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "2"}}}},
    ],
}


def _run(items: list[dict], faster: bool) -> tuple[list[dict], str | None]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-central-1")
        create_table(client, TABLE)
        client.put_item(TableName=TABLE, Item=_item("old", v="0"))
        client.put_item(TableName=TABLE, Item=_item("gone", v="0"))
        client.put_item(TableName=TABLE, Item=_item("guard", v="0"))
        error = None
        context = item_level_transaction_backups() if faster else _nothing()
        with context:
            try:
                client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                error = exc.response["Error"]["Code"]
        table = sorted(client.scan(TableName=TABLE)["Items"], key=lambda item: item["pk"]["S"])
        return table, error


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_item_level_backups_end_like_moto(scenario):
    assert _run(SCENARIOS[scenario], faster=True) == _run(SCENARIOS[scenario], faster=False)


def test_a_cancelled_transaction_leaves_the_table_as_it_was():
    table, error = _run(SCENARIOS["a failing condition check undoes a put, an update and a delete"], faster=True)
    assert error == "TransactionCanceledException"
    assert [(item["pk"]["S"], item["v"]["S"]) for item in table] == [("gone", "0"), ("guard", "0"), ("old", "0")]


def test_moto_is_restored_after_the_block():
    from moto.dynamodb.models import DynamoDBBackend

    from tests.support import moto_transactions

    with item_level_transaction_backups():
        assert DynamoDBBackend.transact_write_items is not moto_transactions._MOTO_TRANSACT_WRITE_ITEMS
    assert DynamoDBBackend.transact_write_items is moto_transactions._MOTO_TRANSACT_WRITE_ITEMS
