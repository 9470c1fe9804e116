"""DynamoDbStore under moto: the AWS call budget of each method (PERFORMANCE A2-A4, T1), the item
layout (TTL, JSON documents), no Scan ever, and botocore failures surfacing as StoreUnavailableError.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.aws import create_table
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from chalicelib.adapters.store import dynamodb as dynamodb_module
from chalicelib.adapters.store.base import ContactCommit, IdentifierTakenError
from chalicelib.adapters.store.dynamodb import DynamoDbStore
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import (
    Case,
    Channel,
    Contact,
    ContentType,
    Customer,
    DeadLetter,
    Delivery,
    Party,
    Resolution,
    StatusEvent,
)
from chalicelib.errors import ItemTooLargeError, StoreRejectedError, StoreUnavailableError, TransientError

#: The only operations the store may issue: key-based reads and writes.
KEY_BASED = {
    "GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
    "TransactWriteItems",
}
NOW = datetime.now(timezone.utc).replace(microsecond=0)
WEEK = timedelta(days=7)


@pytest.fixture
def table(aws, unique):
    client = aws.client("dynamodb")
    name = unique("hub-it")
    create_table(client, name)
    yield name
    client.delete_table(TableName=name)


@pytest.fixture
def raw(aws):
    """An unwatched client, for setting up and inspecting items behind the store's back."""
    return aws.client("dynamodb")


@pytest.fixture
def client(aws, calls):
    return calls.watch(aws.client("dynamodb"))


@pytest.fixture
def store(table, client):
    return DynamoDbStore(table, client)


@pytest.fixture(autouse=True)
def only_key_based_access(calls):
    yield
    assert "Scan" not in calls.names
    assert set(calls.names) <= KEY_BASED, f"non key-based operations: {set(calls.names) - KEY_BASED}"


def ident(number: str) -> Identifier:
    return Identifier(kind=IdentifierKind.PHONE, value=number)


def a_customer(*numbers: str) -> Customer:
    return Customer(id=new_id("cus"), identifiers=[ident(n) for n in numbers])


def a_commit(customer: Customer, *, dedupe_key: str = "msg:twilio:SM1", expires_at: datetime | None = None):
    case = Case(id=new_id("cas"), customer_id=customer.id, opened_at=NOW, last_activity_at=NOW)
    contact = Contact(
        id=new_id("con"), provider="twilio", channel=Channel.SMS, provider_message_id="SM1", account="+15550001111",
        sender=Party(identifiers=customer.identifiers), received_at=NOW, content_type=ContentType.TEXT, text="hi",
        customer_id=customer.id, case_id=case.id,
        resolution=Resolution(customer_id=customer.id, created_customer=False, rule="identifier"),
        raw={"price": 0.0075, "segments": 1},
    )
    # The commit writes the next version of the customer as read.
    return ContactCommit(contact=contact, case=case, customer=customer.model_copy(update={"version": customer.version + 1}),
                         dedupe_key=dedupe_key, dedupe_expires_at=expires_at or NOW + WEEK, committed_at=NOW)


def a_stored_customer(store, *numbers: str) -> Customer:
    customer = a_customer(*numbers)
    store.create_customer(customer)
    return customer


def item(raw, table: str, pk: str, sk: str) -> dict:
    return raw.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")


def remember(store, key: str, now: datetime = NOW) -> str | None:
    """A write of one item, for failure tests."""
    return store.remember(key, expires_at=now + timedelta(hours=1), now=now)


# --- call budgets --------------------------------------------------------------------------------


def test_begin_costs_one_consistent_batch_get_in_every_combination(store, calls):
    ada = a_stored_customer(store, "+4915111111111")
    store.commit_contact(a_commit(ada, dedupe_key="done"))
    calls.clear()
    for key in ("new", "done"):
        for reads in ({}, {"identifiers": ada.identifiers}, {"customer_id": ada.id}):
            store.begin(key, now=NOW, **reads)
            assert calls.names == ["BatchGetItem"], (key, reads)
            [request] = calls.of("BatchGetItem")
            assert request["RequestItems"][store._table]["ConsistentRead"] is True
            calls.clear()


def test_the_commits_done_marker_is_conditional(store, calls):
    customer = a_stored_customer(store, "+4915111111111")
    calls.clear()
    store.commit_contact(a_commit(customer, dedupe_key="k"))
    [transaction] = calls.of("TransactWriteItems")
    [marker] = [a["Put"] for a in transaction["TransactItems"]
                if "Put" in a and a["Put"]["Item"]["pk"] == {"S": "DEDUPE#k"}]
    assert "attribute_not_exists(pk)" in marker["ConditionExpression"]
    assert "ReturnValuesOnConditionCheckFailure" not in marker


def test_find_customer_ids_costs_one_batch_get(store, calls):
    ada, bob = a_customer("+4915111111111"), a_customer("+4915122222222")
    store.create_customer(ada)
    store.create_customer(bob)
    calls.clear()
    found = store.find_customer_ids([ident("+4915111111111"), ident("+4915122222222"), ident("+4915111111111"),
                                     ident("+4915133333333")])
    assert found == {"phone:+4915111111111": ada.id, "phone:+4915122222222": bob.id}
    assert calls.names == ["BatchGetItem"]
    calls.clear()
    assert store.find_customer_ids([]) == {}
    assert calls.names == []


def test_get_customer_costs_one_get_item(store, calls):
    customer = a_customer("+4915111111111")
    store.create_customer(customer)
    calls.clear()
    assert store.get_customer(customer.id) == customer
    assert store.get_customer("cus_missing") is None
    assert calls.names == ["GetItem", "GetItem"]


def test_create_customer_costs_one_transaction(store, calls):
    customer = a_customer("+4915111111111", "+4915122222222")
    store.create_customer(customer)
    assert calls.names == ["TransactWriteItems"]
    [transaction] = calls.of("TransactWriteItems")
    assert len(transaction["TransactItems"]) == 3  # the customer and one item per identifier


def test_a_lost_create_customer_race_costs_one_call_and_names_the_owner(store, calls):
    owner = a_customer("+4915111111111")
    store.create_customer(owner)
    calls.clear()
    with pytest.raises(IdentifierTakenError) as raised:
        store.create_customer(a_customer("+4915199999999", "+4915111111111"))
    assert (raised.value.identifier, raised.value.customer_id) == ("phone:+4915111111111", owner.id)
    # The cancellation reasons carry the old item (ALL_OLD): no read needed.
    assert calls.names == ["TransactWriteItems"]


def test_without_the_old_item_one_get_item_names_the_owner(store, client, calls):
    owner = a_customer("+4915111111111")
    store.create_customer(owner)

    def strip_old_items(parsed, **_):
        for reason in parsed.get("CancellationReasons", []):
            reason.pop("Item", None)

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", strip_old_items)
    calls.clear()
    with pytest.raises(IdentifierTakenError) as raised:
        store.create_customer(a_customer("+4915111111111"))
    assert raised.value.customer_id == owner.id
    assert calls.names == ["TransactWriteItems", "GetItem"]


def test_commit_contact_costs_one_transaction_guarded_by_the_customer_version(store, calls):
    customer = a_stored_customer(store, "+4915111111111")
    commit = a_commit(customer)
    calls.clear()
    store.commit_contact(commit)
    assert calls.names == ["TransactWriteItems"]
    [transaction] = calls.of("TransactWriteItems")
    puts = [action["Put"] for action in transaction["TransactItems"]]
    assert puts[0]["Item"]["sk"] == {"S": "PROFILE"}
    assert puts[0]["ConditionExpression"] == "#version = :expected"
    assert puts[0]["ExpressionAttributeValues"] == {":expected": {"N": "0"}}
    written = {(put["Item"]["pk"]["S"], put["Item"]["sk"]["S"]) for put in puts}
    assert written == {
        (f"CONTACT#{commit.contact.id}", "CONTACT"),
        (f"CUST#{customer.id}", f"CONTACT#{commit.contact.id}"),
        (f"CASE#{commit.case.id}", "CASE"),
        (f"CUST#{customer.id}", "PROFILE"),
        ("DEDUPE#msg:twilio:SM1", "DEDUPE"),
    }


def test_record_status_costs_one_conditional_put(store, calls):
    event = StatusEvent(provider="twilio", channel=Channel.SMS, provider_message_id="SM1", status="delivered")
    assert store.record_status(event, expires_at=NOW + timedelta(days=30)) is True
    assert store.record_status(event, expires_at=NOW + timedelta(days=30)) is False
    assert calls.names == ["PutItem", "PutItem"]
    assert all("ConditionExpression" in p for p in calls.of("PutItem"))


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (lambda s: s.get_contact("con_1"), ["Query"]),
        (lambda s: s.get_case("cas_1"), ["Query"]),
        (lambda s: s.list_contacts("cus_1", limit=20), ["Query"]),
        (lambda s: s.list_statuses("twilio", "SM1"), ["Query"]),
        # The reference and the link back from it (callbacks find the case by it), together.
        (lambda s: s.put_case_ref("cas_1", "zendesk", "42"), ["TransactWriteItems"]),
        (lambda s: s.put_delivery(Delivery(id="d", contact_id="con_1", destination="zendesk")), ["PutItem"]),
        (lambda s: s.get_delivery("con_1", "zendesk"), ["GetItem"]),
        (lambda s: s.ping(), ["GetItem"]),
    ],
    ids=["get_contact", "get_case", "list_contacts", "list_statuses", "put_case_ref", "put_delivery",
         "get_delivery", "ping"],
)
def test_every_other_method_costs_one_call(store, calls, operation, expected):
    operation(store)
    assert calls.names == expected


def test_a_duplicate_costs_one_call_and_a_returning_customer_four(store, calls):
    """PERFORMANCE A3 (duplicate = 1 call) and A2 (new message ≤ 4 calls) on the store's side."""
    customer = a_customer("+4915111111111")
    store.create_customer(customer)
    calls.clear()

    # A new message from a returning customer on a cold cache: the owners with the done marker →
    # the customer → the commit.
    start = store.begin("msg:twilio:SM1", now=NOW, identifiers=customer.identifiers)
    assert not start.done
    loaded = store.get_customer(start.customer_ids["phone:+4915111111111"])
    store.commit_contact(a_commit(loaded, dedupe_key="msg:twilio:SM1"))
    assert calls.names == ["BatchGetItem", "GetItem", "TransactWriteItems"]

    # On a warm cache: the customer with the done marker → the commit.
    calls.clear()
    start = store.begin("msg:twilio:SM2", now=NOW, customer_id=customer.id)
    store.commit_contact(a_commit(start.customer, dedupe_key="msg:twilio:SM2"))
    assert calls.names == ["BatchGetItem", "TransactWriteItems"]

    calls.clear()
    assert store.begin("msg:twilio:SM1", now=NOW + timedelta(minutes=5), identifiers=customer.identifiers).done
    assert calls.names == ["BatchGetItem"]


# --- item layout ---------------------------------------------------------------------------------


def test_done_markers_carry_a_ttl_of_at_least_seven_days(store, raw, table):
    written_at = datetime.now(timezone.utc)
    expiry = written_at + WEEK
    store.commit_contact(a_commit(a_stored_customer(store, "+4915111111111"), dedupe_key="msg:meta:wamid.1",
                                  expires_at=expiry))
    store.commit_contact(a_commit(a_stored_customer(store, "+4915122222222"), dedupe_key="msg:twilio:SM9",
                                  expires_at=expiry))
    for key in ("msg:meta:wamid.1", "msg:twilio:SM9"):
        marker = item(raw, table, f"DEDUPE#{key}", "DEDUPE")
        assert marker["state"] == {"S": "done"}
        # Whole epoch seconds, the unit DynamoDB's TTL reads, and a week past the write.
        assert marker["expires_at"] == {"N": str(int(expiry.timestamp()))}
        assert int(marker["expires_at"]["N"]) - int(written_at.timestamp()) >= 7 * 86400


def test_a_lease_an_older_hub_left_does_not_block_the_commit(store, raw, table):
    raw.put_item(TableName=table, Item={"pk": {"S": "DEDUPE#k"}, "sk": {"S": "DEDUPE"}, "state": {"S": "in_progress"},
                                        "lease_until": {"N": str(NOW.timestamp() + 30)},
                                        "expires_at": {"N": str(int((NOW + timedelta(hours=1)).timestamp()))}})
    assert store.begin("k", now=NOW).done is False
    store.commit_contact(a_commit(a_stored_customer(store, "+4915111111111"), dedupe_key="k"))
    assert item(raw, table, "DEDUPE#k", "DEDUPE")["state"] == {"S": "done"}


def test_status_records_carry_a_ttl(store, raw, table):
    event = StatusEvent(provider="twilio", channel=Channel.SMS, provider_message_id="SM1", status="read")
    store.record_status(event, expires_at=NOW + timedelta(days=30))
    record = item(raw, table, "STATUS#twilio#SM1", "read")
    assert record["expires_at"] == {"N": str(int((NOW + timedelta(days=30)).timestamp()))}


def test_documents_are_json_strings_with_exact_floats(store, raw, table):
    commit = a_commit(a_stored_customer(store, "+4915111111111"))
    store.commit_contact(commit)
    stored = item(raw, table, f"CONTACT#{commit.contact.id}", "CONTACT")
    assert set(stored) == {"pk", "sk", "doc"}
    assert json.loads(stored["doc"]["S"])["raw"] == {"price": 0.0075, "segments": 1}
    assert store.get_contact(commit.contact.id).raw["price"] == 0.0075


# --- retries of unprocessed batch items ----------------------------------------------------------


def test_unprocessed_batch_reads_are_retried(store, client, calls, monkeypatch):
    monkeypatch.setattr(dynamodb_module, "_BACKOFF_SECONDS", 0)
    ada, bob = a_customer("+4915111111111"), a_customer("+4915122222222")
    store.create_customer(ada)
    store.create_customer(bob)
    state = {"first": True}

    def withhold_one(parsed, **_):
        if state.pop("first", False):
            withheld = parsed["Responses"][store._table].pop()
            parsed["UnprocessedKeys"] = {store._table: {"Keys": [{"pk": withheld["pk"], "sk": {"S": "IDENT"}}],
                                                        "ProjectionExpression": "pk, customer_id"}}

    client.meta.events.register("after-call.dynamodb.BatchGetItem", withhold_one)
    calls.clear()
    found = store.find_customer_ids([ident("+4915111111111"), ident("+4915122222222")])
    assert found == {"phone:+4915111111111": ada.id, "phone:+4915122222222": bob.id}
    assert calls.names == ["BatchGetItem", "BatchGetItem"]


def test_a_cancelled_transaction_that_is_not_a_lost_condition_is_store_unavailable(store, client, calls):
    customer = a_stored_customer(store, "+4915111111111")

    def conflict(params, **_):
        raise ClientError(
            {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
             "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]},
            "TransactWriteItems",
        )

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", conflict)
    with pytest.raises(StoreUnavailableError):
        store.commit_contact(a_commit(customer))


# --- failures ------------------------------------------------------------------------------------


def test_a_missing_table_is_store_unavailable(aws, calls):
    store = DynamoDbStore("hub-it-missing", calls.watch(aws.client("dynamodb")))
    with pytest.raises(StoreUnavailableError) as raised:
        store.ping()
    assert isinstance(raised.value.__cause__, ClientError)
    assert raised.value.__cause__.response["Error"]["Code"] == "ResourceNotFoundException"
    assert calls.names == ["GetItem"]  # ping never calls DescribeTable


def test_a_connection_failure_is_store_unavailable(aws, table):
    client = aws.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.dynamodb", unreachable)
    store = DynamoDbStore(table, client)
    with pytest.raises(StoreUnavailableError) as raised:
        remember(store, "k")
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_a_botocore_validation_error_is_store_unavailable(aws, calls):
    # A misconfigured table name (not a string) fails botocore's client-side validation (here the
    # endpoint ruleset's type check on TableName, before parameter validation).
    store = DynamoDbStore(12345, calls.watch(aws.client("dynamodb")))  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError) as raised:
        store.get_customer("cus_1")
    assert isinstance(raised.value.__cause__, BotoCoreError)
    assert calls.names == []  # never reached the wire


# --- permanent rejections and throttling ---------------------------------------------------------


def refuse(client, operation: str, code: str, message: str = "refused", reasons: list | None = None) -> None:
    """Make every `operation` call fail as DynamoDB fails it, before it reaches moto."""

    def fail(**_):
        response = {"Error": {"Code": code, "Message": message}}
        if reasons is not None:
            response["CancellationReasons"] = reasons
        raise ClientError(response, operation)

    client.meta.events.register(f"before-call.dynamodb.{operation}", fail)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException",
                                  "RequestLimitExceeded", "InternalServerError"])
def test_throttling_and_server_errors_are_store_unavailable(aws, table, code):
    client = aws.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    refuse(client, "PutItem", code)
    with pytest.raises(StoreUnavailableError) as raised:
        remember(DynamoDbStore(table, client), "k")
    assert raised.value.__cause__.response["Error"]["Code"] == code


def test_dynamodbs_own_item_size_limit_is_a_permanent_rejection(table, client, calls):
    # The port's limit is off here, so DynamoDB (moto) refuses the item itself.
    store = DynamoDbStore(table, client, max_item_bytes=2 * 1024 * 1024)
    customer = a_stored_customer(store, "+4915111111111")
    commit = a_commit(customer)
    commit.contact.text = "x" * (500 * 1024)
    calls.clear()

    with pytest.raises(ItemTooLargeError) as raised:
        store.commit_contact(commit)
    with pytest.raises(ItemTooLargeError):
        store.put_delivery(Delivery(id="d", contact_id="con_1", destination="zendesk", last_error="y" * (500 * 1024)))

    assert not isinstance(raised.value, TransientError)
    assert raised.value.__cause__.response["Error"]["Code"] == "ValidationException"
    assert calls.names == ["TransactWriteItems", "PutItem"]
    assert store.get_contact(commit.contact.id) is None


def test_a_validation_exception_is_a_permanent_rejection(table, client):
    refuse(client, "GetItem", "ValidationException", "One or more parameter values were invalid")
    with pytest.raises(StoreRejectedError) as raised:
        DynamoDbStore(table, client).get_customer("cus_1")
    assert not isinstance(raised.value, (TransientError, ItemTooLargeError))
    assert raised.value.http_status == 422


def test_a_transaction_cancelled_by_a_validation_error_is_a_permanent_rejection(store, client):
    customer = a_stored_customer(store, "+4915111111111")
    refuse(client, "TransactWriteItems", "TransactionCanceledException", "cancelled",
           reasons=[{"Code": "ConditionalCheckFailed"},
                    {"Code": "ValidationError", "Message": "Item size to update has exceeded the maximum allowed size"}])
    with pytest.raises(ItemTooLargeError):
        store.commit_contact(a_commit(customer))


# --- dead letters and remember -------------------------------------------------------------------


def a_dead_letter(customer_id: str | None, *, expires_at: datetime) -> DeadLetter:
    return DeadLetter(id="dlv_1", destination="zendesk", subject_id="con_1", reason="no", attempts=1, dead_at=NOW,
                      job='{"kind": "contact"}', customer_id=customer_id, expires_at=expires_at)


def test_a_dead_letter_carries_a_ttl_and_is_indexed_under_its_customer_in_one_call(store, raw, table, calls):
    expiry = NOW + timedelta(days=30)
    assert store.put_dead_letter(a_dead_letter("cus_1", expires_at=expiry)) is True
    assert calls.names == ["TransactWriteItems"]

    stored = item(raw, table, "DEADLETTERS", "dlv_1")
    index = item(raw, table, "CUST#cus_1", "DEADLETTER#dlv_1")
    ttl = {"N": str(int(expiry.timestamp()))}
    assert (stored["expires_at"], stored["customer_id"], stored["destination"]) == (ttl, {"S": "cus_1"}, {"S": "zendesk"})
    assert set(index) == {"pk", "sk", "expires_at"} and index["expires_at"] == ttl, "the index holds no personal data"

    calls.clear()
    assert [letter.id for letter in store.dead_letters_of("cus_1")] == ["dlv_1"]
    assert calls.names == ["Query", "BatchGetItem"]
    calls.clear()
    assert store.dead_letters_of("cus_nobody") == []
    assert calls.names == ["Query"]


def test_a_dead_letter_of_nobody_costs_one_put(store, raw, table, calls):
    assert store.put_dead_letter(a_dead_letter(None, expires_at=NOW + timedelta(days=30))) is True
    assert calls.names == ["PutItem"]
    assert "customer_id" not in item(raw, table, "DEADLETTERS", "dlv_1")


def test_remember_costs_one_conditional_put_with_a_ttl(store, raw, table, calls):
    # from the real clock, as `remember` checks expiry against it: NOW is fixed when the module is
    # collected, which a long suite run leaves more than 10 minutes behind
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=10)
    assert store.remember("mailgun:token:abc", value="<m1@x>", expires_at=until) is None
    assert store.remember("mailgun:token:abc", value="<m2@x>", expires_at=until) == "<m1@x>"
    assert calls.names == ["PutItem", "PutItem"], "the earlier value comes back with the failed condition"
    [put, _] = calls.of("PutItem")
    assert put["ConditionExpression"] == "attribute_not_exists(pk) OR expires_at <= :now"
    assert item(raw, table, "REMEMBER#mailgun:token:abc", "REMEMBER")["expires_at"] == {"N": str(int(until.timestamp()))}
