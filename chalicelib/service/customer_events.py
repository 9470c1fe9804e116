"""Queueing customer-level events (`customer.erased`, `customer.merged`, `customer.unmerged`) and
case events (`case.opened`, `case.closed`, `case.reopened`) for
the destinations that take them.

Ids are derived from what happened, not from when it was announced: a command that is retried
after its change was committed announces it again with the same ids, and the queue and the
deliver worker drop the repeats. So a change is announced only once it is committed, yet never
lost to a crash between committing and announcing.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.domain.ids import delivery_id, digest_id, group_id
from chalicelib.domain.models import Case, CustomerEvent, MergeRecord


def customer_event_messages(
    event_type: str, customer_id: str, *, occurred_at: datetime, destinations: list[str],
    other_customer_id: str | None = None, merge_id: str | None = None,
) -> list[OutgoingMessage]:
    """One queue message per destination, in the customer's FIFO group for that destination, so
    the event reaches it in order with the customer's contacts."""
    event_id = digest_id("evt", f"{event_type}:{merge_id or customer_id}")
    return [
        OutgoingMessage(
            body=CustomerEvent(
                event_id=event_id, delivery_id=delivery_id(event_id, destination), destination=destination,
                event_type=event_type, customer_id=customer_id, occurred_at=occurred_at,
                other_customer_id=other_customer_id, merge_id=merge_id,
            ).model_dump_json(),
            group=group_id(f"{destination}:{customer_id}"),
            dedupe_id=delivery_id(event_id, destination),
        )
        for destination in destinations
    ]


def merge_event_messages(record: MergeRecord, *, destinations: list[str]) -> list[OutgoingMessage]:
    """`customer.merged`, or `customer.unmerged` once the merge was reverted."""
    if record.reverted_at is None:
        event_type, occurred_at = "customer.merged", record.merged_at
    else:
        event_type, occurred_at = "customer.unmerged", record.reverted_at
    return customer_event_messages(
        event_type, record.survivor_id, occurred_at=occurred_at, destinations=destinations,
        other_customer_id=record.absorbed_id, merge_id=record.id,
    )


def case_event_messages(
    event_type: str, case: Case, *, occurred_at: datetime, destinations: list[str], reason: str | None = None,
    by_destination: str | None = None,
) -> list[OutgoingMessage]:
    """`case.opened`, `case.closed` or `case.reopened` for `case`, one message per destination in
    the customer's group. The id is derived from the case and the moment of the change, so a
    retried step announces the same event and a later close of the same case is a new one."""
    event_id = digest_id("evt", f"{event_type}:{case.id}:{occurred_at.isoformat()}")
    return [
        OutgoingMessage(
            body=CustomerEvent(
                event_id=event_id, delivery_id=delivery_id(event_id, destination), destination=destination,
                event_type=event_type, customer_id=case.customer_id, occurred_at=occurred_at, case_id=case.id,
                reason=reason, by_destination=by_destination,
            ).model_dump_json(),
            group=group_id(f"{destination}:{case.customer_id}"),
            dedupe_id=delivery_id(event_id, destination),
        )
        for destination in destinations
    ]
