"""Segments on DynamoDB (moto): the sparse `segment1`/`segment2` indexes as the store writes and
pages them, what leaves them, what each page costs, and how deploy.py adds the indexes one per
stack update."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from chalicelib.adapters.store.dynamodb import DynamoDbStore
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import AttributeValue, Customer
from chalicelib.service.gdpr import erase_customer
from tests.support.aws import create_table
from tests.support.fakes import MemoryQueue
from tests.support.infra_scripts import load_infra_script

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "stateful.yaml"
deploy = load_infra_script("deploy")


@pytest.fixture
def table(aws, calls, unique):
    client = calls.watch(aws.client("dynamodb"))
    name = unique("hub-seg")
    create_table(client, name)
    calls.clear()
    yield name, client
    client.delete_table(TableName=name)


def store_on(table) -> DynamoDbStore:
    name, client = table
    return DynamoDbStore(name, client, indexed_attributes=("postcode", "region"))


def seed(store, count: int, **attributes) -> list[Customer]:
    customers = []
    for _ in range(count):
        values = {name: AttributeValue(value=value, source="crm", updated_at=T0) for name, value in attributes.items()}
        customer = Customer(id=new_id("cus"), attributes=values, created_at=T0, updated_at=T0)
        store.create_customer(customer)
        customers.append(customer)
    return customers


def profile(client, name: str, customer_id: str) -> dict:
    return client.get_item(TableName=name, Key={"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": "PROFILE"}})["Item"]


def test_pages_of_a_segment_cost_one_query_each_on_its_index(table, calls):
    store = store_on(table)
    members = sorted(c.id for c in seed(store, 23, postcode="10115", region="north"))
    seed(store, 4, postcode="20095")
    calls.clear()

    ids, cursor, pages = [], None, 0
    while True:
        page = store.segment_page("region", "North", limit=10, cursor=cursor)
        ids += page.items
        pages += 1
        if page.cursor is None:
            break
        cursor = page.cursor

    assert ids == members and pages == 3
    assert calls.counts() == {"Query": 3}
    queries = calls.of("Query")
    assert {q["IndexName"] for q in queries} == {"segment2"}
    assert all(q["ProjectionExpression"] == "pk" and not q.get("ConsistentRead") for q in queries)
    assert all(q["Limit"] == 11 for q in queries)


def test_a_broadcast_fans_out_page_by_page_with_one_query_per_page(table, calls):
    import json
    from types import SimpleNamespace

    from chalicelib.service.segments import SegmentFanout

    store = store_on(table)
    members = sorted(c.id for c in seed(store, 25, postcode="10115"))
    seed(store, 3, postcode="20095")
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue, page_size=10)
    event = _Event(id="evt-outage-7")
    calls.clear()

    [first] = fanout.start(event, [SimpleNamespace(rule="outage-broadcast", attribute="postcode", values=["10115"])])
    reached, pending = [], [json.loads(first.body)]
    while pending:
        page = pending.pop()
        for message in fanout.page(SimpleNamespace(**{**page, "event": event})):
            body = json.loads(message.body)
            if body["kind"] == "segment_member":
                reached.append(body["customer_id"])
            else:
                pending.append(body)

    assert reached == members
    assert calls.counts() == {"Query": 3}
    assert {q["IndexName"] for q in calls.of("Query")} == {"segment1"}


class _Event:
    """An event as the fan-out needs it: its id and its JSON."""

    def __init__(self, id: str) -> None:
        self.id = id

    def model_dump(self, *, mode: str) -> dict:
        return {"type": "outage.started", "id": self.id, "occurred_at": T0.isoformat(), "customer": None, "data": {},
                "source": "api:ops", "received_at": T0.isoformat()}


def test_the_profile_carries_its_segment_keys_and_a_changed_value_leaves_the_index(table):
    name, client = table
    store = store_on(table)
    [customer] = seed(store, 1, postcode=" 10115 ", region=["a", "list"])
    assert {k: v for k, v in profile(client, name, customer.id).items() if k.startswith("seg")} == {"seg1": {"S": "10115"}}

    moved = customer.model_copy(deep=True)
    moved.attributes["postcode"] = AttributeValue(value="20095", source="crm", updated_at=T0)
    moved.attributes["region"] = AttributeValue(value="South", source="crm", updated_at=T0)
    moved.version += 1
    store.update_customer(moved)

    assert store.segment_page("postcode", "10115", limit=10).items == []
    assert store.segment_page("postcode", "20095", limit=10).items == [customer.id]
    assert store.segment_page("region", "south", limit=10).items == [customer.id]


def test_erasure_takes_the_customer_out_of_every_segment(table):
    store = store_on(table)
    erased, kept = seed(store, 2, postcode="10115", region="north")

    erase_customer(store, _NoBlobs(), MemoryQueue(), erased.id, now=T0, event_destinations=[])

    assert store.segment_page("postcode", "10115", limit=10).items == [kept.id]
    assert store.segment_page("region", "north", limit=10).items == [kept.id]


def test_get_customers_reads_a_hundred_per_batch(table, calls):
    store = store_on(table)
    customers = seed(store, 150, postcode="10115")
    calls.clear()

    found = store.get_customers([c.id for c in customers])

    assert set(found) == {c.id for c in customers}
    assert calls.counts() == {"BatchGetItem": 2}
    assert all(request["RequestItems"][table[0]]["ConsistentRead"] for request in calls.of("BatchGetItem"))


def test_reindex_sets_the_segment_keys_of_customers_written_before_without_changing_them(table, calls):
    name, client = table
    before = DynamoDbStore(name, client)
    customers = seed(before, 5, postcode="10115")
    after = store_on(table)
    assert after.segment_page("postcode", "10115", limit=10).items == []
    calls.clear()

    pages, changed, cursor = 0, 0, None
    while True:
        page = after.reindex_customers(limit=4, cursor=cursor)
        pages, changed, cursor = pages + 1, changed + page.changed, page.cursor
        if cursor is None:
            break

    assert changed == 5
    assert calls.counts() == {"Scan": pages, "UpdateItem": 5}
    assert after.segment_page("postcode", "10115", limit=10).items == sorted(c.id for c in customers)
    assert after.get_customer(customers[0].id) == customers[0]  # same document, same version


def test_reindex_skips_a_customer_written_since_the_scan_read_it(table):
    name, client = table
    [customer] = seed(DynamoDbStore(name, client), 1, postcode="10115")
    store = store_on(table)
    [item] = client.scan(TableName=name, FilterExpression="sk = :p", ExpressionAttributeValues={":p": {"S": "PROFILE"}})["Items"]
    moved = customer.model_copy(deep=True)
    moved.attributes["postcode"] = AttributeValue(value="20095", source="crm", updated_at=T0)
    moved.version += 1
    store.update_customer(moved)

    assert store._reindex_profile(item, store.indexed_attributes) is False  # the stale read loses
    assert store.segment_page("postcode", "20095", limit=10).items == [customer.id]
    assert store.segment_page("postcode", "10115", limit=10).items == []


# --- deploying the indexes -------------------------------------------------------------------------


def stubbed_client():
    return boto3.client("cloudformation", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_deploy_adds_the_segment_indexes_one_update_at_a_time(capsys):
    client = stubbed_client()
    stack = {"StackName": "hub-dev", "CreationTime": "2026-01-01T00:00:00Z"}
    outputs = [{"OutputKey": key, "OutputValue": f"value-of-{key}"} for key in deploy.OUTPUT_VARIABLES]

    def update(indexes: str) -> dict:
        return {"StackName": "hub-dev", "TemplateBody": "template", "Tags": ANY, "Parameters": [
            {"ParameterKey": "Stage", "ParameterValue": "dev"}, {"ParameterKey": "MediaRetentionDays", "ParameterValue": "30"},
            {"ParameterKey": "SegmentIndexes", "ParameterValue": indexes}], "Capabilities": ["CAPABILITY_NAMED_IAM"]}

    with Stubber(client) as stub:
        # A stack from before the parameter: no segment index yet.
        stub.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": "UPDATE_COMPLETE"}]})
        for indexes in ("1", "2"):
            stub.add_response("update_stack", {"StackId": "arn:stack"}, expected_params=update(indexes))
            stub.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": "UPDATE_COMPLETE"}]})  # the waiter
        stub.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}]})

        assert deploy.deploy_stack(client, "dev", "template", wait_delay=1)["TableName"] == "value-of-TableName"
        stub.assert_no_pending_responses()
    assert "1 segment indexes" in capsys.readouterr().err


@pytest.mark.parametrize(("deployed", "wanted", "steps"), [
    (0, 2, [1, 2]), (2, 0, [1, 0]), (2, 2, [2]), (0, 0, [0]), (1, 2, [2]), (2, 1, [1]),
])
def test_index_steps_move_one_index_per_update(deployed, wanted, steps):
    assert deploy.index_steps(deployed, wanted) == steps


def test_deploy_refuses_more_indexes_than_slots():
    with pytest.raises(deploy.DeployError, match="0, 1 or 2"):
        deploy.deploy_stack(stubbed_client(), "dev", "template", segment_indexes=3)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SQS..QueuePolicy:UserWarning")
@pytest.mark.parametrize(("indexes", "names"), [(0, []), (1, ["segment1"]), (2, ["segment1", "segment2"])])
def test_the_template_creates_as_many_segment_indexes_as_asked(indexes, names):
    with mock_aws():
        session = boto3.Session(region_name="eu-central-1")
        outputs = deploy.deploy_stack(session.client("cloudformation"), f"seg{indexes}", TEMPLATE.read_text(), wait_delay=1,
                                      segment_indexes=indexes)
        table = session.client("dynamodb").describe_table(TableName=outputs["TableName"])["Table"]

        assert [index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])] == names
        assert {a["AttributeName"] for a in table["AttributeDefinitions"]} == {"pk", "sk", *(f"seg{n + 1}" for n in range(indexes))}
        if indexes:
            store = DynamoDbStore(outputs["TableName"], session.client("dynamodb"), indexed_attributes=("postcode",))
            [customer] = seed(store, 1, postcode="10115")
            assert store.segment_page("postcode", "10115", limit=5).items == [customer.id]


def test_the_segment_query_statement_covers_the_stage_indexes_only():
    import fnmatch

    policies = load_infra_script("policies")
    [resource] = policies.segment_query_statement(policies.Stage("dev"))["Resource"]
    table = "arn:aws:dynamodb:eu-central-1:123456789012:table/hub-dev"

    assert policies.segment_query_statement(policies.Stage("dev"))["Action"] == ["dynamodb:Query"]
    assert fnmatch.fnmatchcase(f"{table}/index/segment1", resource)
    assert fnmatch.fnmatchcase(f"{table}/index/segment2", resource)
    assert not fnmatch.fnmatchcase(table, resource)
    assert not fnmatch.fnmatchcase(f"{table}-qa/index/segment1", resource)


class _NoBlobs:
    def delete(self, key):
        raise AssertionError(f"nothing was stored as a blob, not {key}")
