"""The merged timeline: pages across the partitions of a customer and those it absorbed."""

from __future__ import annotations

from types import SimpleNamespace

from chalicelib.adapters.store.base import Page
from chalicelib.domain.models import Customer
from chalicelib.service.timeline import timeline_page


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
