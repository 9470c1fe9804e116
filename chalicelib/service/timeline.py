"""A customer's timeline: its contacts, newest first, including those of customers it absorbed.

A merge moves no contacts (see `domain/merging.py`), so the timeline reads the survivor's
partition and each absorbed customer's, and merges them by contact id, which orders by arrival
time. Each partition is read one page at a time, so a page costs one query per partition.
"""

from __future__ import annotations

from collections.abc import Iterator

from chalicelib.adapters.store.base import Page, Store
from chalicelib.domain.models import Contact, Customer


def timeline_page(store: Store, customer: Customer, *, limit: int, cursor: str | None = None) -> Page[Contact]:
    owners = [customer.id, *customer.merged_from]
    if len(owners) == 1:
        return store.list_contacts(customer.id, limit=limit, cursor=cursor)
    pages = [store.list_contacts(owner, limit=limit, cursor=cursor) for owner in owners]
    merged = sorted((c for page in pages for c in page.items), key=lambda c: c.id, reverse=True)
    # A partition whose page was cut short (the store's response size limit) has unread contacts
    # below its last one: nothing older than that may be returned yet, or the cursor skips them.
    unfinished = [page.items[-1].id for page in pages if page.cursor is not None and page.items]
    if unfinished:
        floor = max(unfinished)
        merged = [c for c in merged if c.id >= floor]
    items = merged[:limit]
    more = len(merged) > limit or bool(unfinished)
    return Page(items=items, cursor=items[-1].id if items and more else None)


def all_contacts(store: Store, customer_id: str, *, page_size: int = 100) -> Iterator[Contact]:
    """Every contact in one customer's own partition (not those of customers it absorbed)."""
    cursor = None
    while True:
        page = store.list_contacts(customer_id, limit=page_size, cursor=cursor)
        yield from page.items
        if page.cursor is None:
            return
        cursor = page.cursor
