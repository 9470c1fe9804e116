"""The segment index contract (`Store.segment_page`, `Store.get_customers`): SQLite and DynamoDB
under moto list the same customers for the same writes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.store.base import Erasure
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import AttributeValue, Customer
from chalicelib.errors import ConfigError, StoreRejectedError
from tests.support.aws import create_table

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
INDEXED = ("postcode", "region")


@pytest.fixture
def store(store_backend, request, tmp_path):
    """A store indexing `postcode` (slot 1) and `region` (slot 2), on each backend."""
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        sqlite_store = SqliteStore(str(tmp_path / "hub.db"), indexed_attributes=INDEXED)
        yield sqlite_store
        sqlite_store.close()
        return
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    client = request.getfixturevalue("aws").client("dynamodb")
    name = f"hub-seg-{uuid.uuid4().hex[:12]}"
    create_table(client, name)
    yield DynamoDbStore(name, client, indexed_attributes=INDEXED)
    client.delete_table(TableName=name)


def customer_with(**attributes) -> Customer:
    values = {name: AttributeValue(value=value, source="crm", updated_at=T0) for name, value in attributes.items()}
    return Customer(id=new_id("cus"), attributes=values, created_at=T0, updated_at=T0)


def changed(customer: Customer, **attributes) -> Customer:
    """The customer's next version with `attributes` set (None removes one)."""
    nxt = customer.model_copy(deep=True)
    for name, value in attributes.items():
        if value is None:
            nxt.attributes.pop(name, None)
        else:
            nxt.attributes[name] = AttributeValue(value=value, source="crm", updated_at=T0)
    nxt.version += 1
    return nxt


def all_ids(store, attribute: str, value, *, limit: int = 100) -> list[str]:
    ids, cursor = [], None
    while True:
        page = store.segment_page(attribute, value, limit=limit, cursor=cursor)
        ids += page.items
        if page.cursor is None:
            return ids
        cursor = page.cursor


def test_a_segment_is_paged_in_id_order_across_cursors(store):
    members = [customer_with(postcode="10115") for _ in range(7)]
    for customer in [*members, customer_with(postcode="20095"), customer_with(region="north")]:
        store.create_customer(customer)

    first = store.segment_page("postcode", "10115", limit=3, cursor=None)
    second = store.segment_page("postcode", "10115", limit=3, cursor=first.cursor)
    third = store.segment_page("postcode", "10115", limit=3, cursor=second.cursor)

    expected = sorted(c.id for c in members)
    assert (first.items, second.items, third.items) == (expected[:3], expected[3:6], expected[6:])
    assert first.cursor == expected[2] and second.cursor == expected[5] and third.cursor is None
    # A page that ends exactly at the last member says so: no empty page follows.
    assert store.segment_page("postcode", "10115", limit=7, cursor=None).cursor is None


def test_values_are_compared_normalized_and_numbers_match_their_text(store):
    padded, number, whole = customer_with(postcode=" AB1 2CD "), customer_with(postcode=10115), customer_with(postcode=10115.0)
    for customer in (padded, number, whole):
        store.create_customer(customer)

    assert all_ids(store, "postcode", "ab1 2cd") == [padded.id]
    assert all_ids(store, "postcode", "10115") == sorted([number.id, whole.id])
    assert all_ids(store, "postcode", 10115) == sorted([number.id, whole.id])


def test_the_index_is_sparse_and_each_attribute_has_its_slot(store):
    both = customer_with(postcode="10115", region="North")
    skipped = [customer_with(postcode=["10115"]), customer_with(postcode={"code": "10115"}),
               customer_with(postcode=True), customer_with(postcode="  "), customer_with(name="Ada")]
    for customer in (both, *skipped):
        store.create_customer(customer)

    assert all_ids(store, "postcode", "10115") == [both.id]
    assert all_ids(store, "region", "north") == [both.id]
    # The region's value is not found in the postcode's slot.
    assert all_ids(store, "postcode", "north") == []


def test_a_changed_value_moves_the_customer_and_a_removed_one_drops_it(store):
    customer = customer_with(postcode="10115", region="north")
    store.create_customer(customer)

    moved = changed(customer, postcode="20095")
    store.update_customer(moved)
    assert all_ids(store, "postcode", "10115") == []
    assert all_ids(store, "postcode", "20095") == [customer.id]

    store.update_customer(changed(moved, postcode=None))
    assert all_ids(store, "postcode", "20095") == []
    assert all_ids(store, "region", "north") == [customer.id]


def test_absorbed_and_erasing_customers_leave_the_index(store):
    absorbed, erasing, kept = (customer_with(postcode="10115") for _ in range(3))
    for customer in (absorbed, erasing, kept):
        store.create_customer(customer)

    gone = changed(absorbed)
    gone.merged_into = kept.id
    store.update_customer(gone)
    leaving = changed(erasing)
    leaving.erasing = True
    store.update_customer(leaving)

    assert all_ids(store, "postcode", "10115") == [kept.id]


def test_erasure_removes_the_customer_from_the_index(store):
    erased, kept = customer_with(postcode="10115"), customer_with(postcode="10115")
    store.create_customer(erased)
    store.create_customer(kept)

    store.erase_customer(Erasure(customer_id=erased.id, identifier_keys=(), contact_ids=(), case_ids=(), thread_keys=(),
                                 dedupe_keys=(), merge_ids=(), erased_at=T0, tombstone_expires_at=T0 + timedelta(days=30)))

    assert all_ids(store, "postcode", "10115") == [kept.id]


def test_only_indexed_attributes_and_indexable_values_can_be_listed(store):
    with pytest.raises(ConfigError, match="'email' is not indexed.*postcode, region"):
        store.segment_page("email", "ada@example.com", limit=10, cursor=None)
    with pytest.raises(StoreRejectedError, match="non-empty text or number"):
        store.segment_page("postcode", "   ", limit=10, cursor=None)
    with pytest.raises(StoreRejectedError, match="at least 1"):
        store.segment_page("postcode", "10115", limit=0, cursor=None)


def test_get_customers_reads_many_and_skips_missing_ones(store):
    customers = [customer_with(postcode=str(n)) for n in range(130)]
    for customer in customers:
        store.create_customer(customer)
    wanted = [c.id for c in customers] + ["cus_missing"]

    found = store.get_customers(wanted + wanted[:5])

    assert set(found) == {c.id for c in customers}
    assert found[customers[42].id] == customers[42]
    assert store.get_customers([]) == {}


def test_a_store_without_indexed_attributes_refuses_segments(store_backend, request, tmp_path):
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        plain = SqliteStore(str(tmp_path / "plain.db"))
    else:
        from chalicelib.adapters.store.dynamodb import DynamoDbStore

        client = request.getfixturevalue("aws").client("dynamodb")
        name = f"hub-plain-{uuid.uuid4().hex[:12]}"
        create_table(client, name, segment_indexes=0)
        plain = DynamoDbStore(name, client)
    customer = customer_with(postcode="10115")
    plain.create_customer(customer)  # no index attribute is written, so no index is needed

    assert plain.get_customer(customer.id) == customer
    with pytest.raises(ConfigError, match="customers.indexed_attributes: none"):
        plain.segment_page("postcode", "10115", limit=10, cursor=None)


def test_sqlite_rebuilds_its_index_when_the_indexed_attributes_change(tmp_path):
    """A database from before the index (or from another configuration) is indexed on opening."""
    from chalicelib.adapters.store.sqlite import SqliteStore

    path = str(tmp_path / "hub.db")
    before = SqliteStore(path)
    north, south = customer_with(postcode="10115", region="North"), customer_with(postcode="20095", region="south")
    absorbed = customer_with(postcode="10115")
    absorbed.merged_into = north.id
    for customer in (north, south, absorbed):
        before.create_customer(customer)
    before.close()

    indexed = SqliteStore(path, indexed_attributes=("postcode", "region"))
    assert all_ids(indexed, "postcode", "10115") == [north.id]
    assert all_ids(indexed, "region", "south") == [south.id]
    indexed.close()

    swapped = SqliteStore(path, indexed_attributes=("region",))
    assert all_ids(swapped, "region", "north") == [north.id]
    with pytest.raises(ConfigError):
        swapped.segment_page("postcode", "10115", limit=10, cursor=None)
    # Slot 1 now holds regions only: no postcode is left over in it.
    assert all_ids(swapped, "region", "10115") == []
    swapped.close()


def reopened(store_backend, request, tmp_path, attributes):
    """Stores on one database or table, opened one after the other with other indexed attributes."""
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        return lambda: SqliteStore(str(tmp_path / "reindex.db"), indexed_attributes=attributes.pop(0))
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    client = request.getfixturevalue("aws").client("dynamodb")
    name = f"hub-reidx-{uuid.uuid4().hex[:12]}"
    create_table(client, name)
    return lambda: DynamoDbStore(name, client, indexed_attributes=attributes.pop(0))


def reindex_all(store, limit: int) -> tuple[int, int]:
    scanned = changed = 0
    cursor = None
    while True:
        page = store.reindex_customers(limit=limit, cursor=cursor)
        scanned, changed = scanned + page.scanned, changed + page.changed
        if page.cursor is None:
            return scanned, changed
        cursor = page.cursor


def test_reindexing_brings_customers_written_before_into_the_new_slots(store_backend, request, tmp_path):
    open_store = reopened(store_backend, request, tmp_path, [("postcode",), ("region", "postcode")])
    before = open_store()
    north = [customer_with(postcode="10115", region="North") for _ in range(4)]
    south = customer_with(postcode="20095", region="south")
    absorbed = customer_with(postcode="10115", region="north")
    absorbed.merged_into = north[0].id
    for customer in (*north, south, absorbed):
        before.create_customer(customer)
    if store_backend == "sqlite":
        before.close()

    after = open_store()
    scanned, _ = reindex_all(after, limit=3)
    assert scanned == 6

    assert all_ids(after, "region", "north") == sorted(c.id for c in north)
    assert all_ids(after, "postcode", "20095") == [south.id]
    # Slot 1 held postcodes and holds regions now: no postcode is left over in it.
    assert all_ids(after, "region", "10115") == []
    # The customers themselves are unchanged (same version), and a second pass has nothing to do.
    assert after.get_customer(south.id) == south
    assert reindex_all(after, limit=50) == (6, 0)


def test_a_reindex_cursor_must_be_one_the_store_gave(store):
    with pytest.raises(StoreRejectedError):
        store.reindex_customers(limit=0)
    if store.backend == "dynamodb":
        with pytest.raises(StoreRejectedError, match="not a reindex cursor"):
            store.reindex_customers(limit=5, cursor="cus_1")
