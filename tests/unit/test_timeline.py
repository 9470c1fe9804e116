"""The merged timeline: pages across the partitions of a customer and those it absorbed; business
events on it (`kind`) and their dedupe keys in an erasure."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from chalicelib.adapters.store.base import Page
from chalicelib.domain.models import Customer, Direction
from chalicelib.service.customers import timeline_kind
from chalicelib.service.gdpr import _event_dedupe_keys
from chalicelib.service.timeline import timeline_page
from tests.contract.test_store_contract import T0, make_case, make_contact, make_customer, phone


class PartitionStore:
    """`list_contacts` over fixed partitions; `cut` partitions return at most that many items per
    page with a cursor, like DynamoDB stopping at its 1 MB response limit."""

    def __init__(self, partitions: dict[str, list[str]], cut: dict[str, int]) -> None:
        self.partitions = {owner: sorted(ids, reverse=True) for owner, ids in partitions.items()}
        self.cut = cut

    def list_contacts(self, customer_id, *, limit, cursor=None):
        ids = [i for i in self.partitions[customer_id] if cursor is None or i < cursor]
        size = min(limit, self.cut.get(customer_id, limit))
        items = [SimpleNamespace(id=i) for i in ids[:size]]
        return Page(items=items, cursor=items[-1].id if len(ids) > size else None)


def read_all(store, customer, limit):
    seen, cursor = [], None
    while True:
        page = timeline_page(store, customer, limit=limit, cursor=cursor)
        seen += [c.id for c in page.items]
        if page.cursor is None:
            return seen
        cursor = page.cursor


def test_a_partition_cut_short_never_lets_the_cursor_skip_its_unread_contacts():
    store = PartitionStore(
        {"cus_A": ["ct_10", "ct_07", "ct_03"], "cus_B": ["ct_09", "ct_08", "ct_02", "ct_01"]},
        cut={"cus_A": 1},
    )
    customer = Customer(id="cus_A", merged_from=["cus_B"])

    assert read_all(store, customer, limit=3) == ["ct_10", "ct_09", "ct_08", "ct_07", "ct_03", "ct_02", "ct_01"]


def test_without_merges_the_timeline_is_the_customer_partition():
    store = PartitionStore({"cus_A": ["ct_3", "ct_2", "ct_1"]}, cut={})

    assert read_all(store, Customer(id="cus_A"), limit=2) == ["ct_3", "ct_2", "ct_1"]


# --- business events on the timeline (kind) and in erasure (their dedupe keys) ------------------

#: `Direction.EVENT` arrives with the business-event models; until then an in-memory contact
#: carries the plain value, which is what the readers compare with.
EVENT = getattr(Direction, "EVENT", "event")


def event_contact(customer, case, *, dedupe_key="event:parcel-9:cus"):
    contact = make_contact(customer, case, text="")
    contact.direction = EVENT
    contact.metadata = {"event": {"type": "parcel.late", "id": "parcel-9", "dedupe_key": dedupe_key}}
    return contact


def test_timeline_items_tell_events_from_contacts():
    customer = make_customer(phone("+4915112345678"))
    case = make_case(customer)
    inbound = make_contact(customer, case)
    outbound = make_contact(customer, case).model_copy(update={"direction": Direction.OUTBOUND})

    assert [timeline_kind(c) for c in (inbound, outbound, event_contact(customer, case))] == ["contact", "contact", "event"]


def test_erasure_keeps_the_dedupe_keys_of_the_customers_events():
    customer = make_customer(phone("+4915112345678"))
    case = make_case(customer)
    inbound = make_contact(customer, case)
    inbound.metadata = {"event": {"dedupe_key": "not-an-event"}}  # only event contacts count
    keyless = event_contact(customer, case)
    keyless.metadata = {"event": {"type": "parcel.late"}}

    contacts = [inbound, event_contact(customer, case), keyless, event_contact(customer, case, dedupe_key="event:e2")]

    assert _event_dedupe_keys(contacts) == ["event:parcel-9:cus", "event:e2"]


@pytest.mark.skipif(not hasattr(Direction, "EVENT"), reason="the store keeps only contacts of a known direction")
def test_an_erased_customers_event_stays_done_and_its_timeline_entry_goes(tmp_path):
    from chalicelib.adapters.store.base import EventCommit
    from chalicelib.adapters.store.sqlite import SqliteStore
    from chalicelib.service.gdpr import erase_customer
    from tests.support.fakes import MemoryQueue

    store = SqliteStore(str(tmp_path / "hub.db"))
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = event_contact(customer, case)
    store.commit_event(EventCommit(contact=contact, customer=None, cases=(case,), dedupe_key="event:parcel-9:cus",
                                   dedupe_expires_at=T0 + timedelta(days=8), committed_at=T0))

    erase_customer(store, _NoBlobs(), MemoryQueue(), customer.id, now=T0, event_destinations=[])

    assert store.get_contact(contact.id) is None
    assert store.begin("event:parcel-9:cus", now=T0 + timedelta(days=20)).done
    store.close()


class _NoBlobs:
    def delete(self, key):
        raise AssertionError(f"nothing was stored as a blob, not {key}")
