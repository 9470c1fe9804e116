"""Fan-out of a business event without a customer to the customers of a segment, page by page
through the events queue.

A broadcast to 100,000 customers must neither hold one worker for minutes nor keep 100,000 ids in
memory. So the event worker only enqueues one `segment_page` message per selected (attribute,
value) (`start`); each page message lists one page of the segment index and enqueues one
`segment_member` message per customer, followed by the page message for the next page (`page`).
No worker ever holds more than one page, pages of different values run in parallel, and a crash
repeats at most one page: members go first and the continuation last, and every message's dedupe
id derives from what it stands for, so a repeat is dropped by the queue (within its dedupe
window) or by the member's done marker (`event:<id>:<customer>`, after it).

The message bodies are the `EventWork` shapes of `domain/business_events.py` (`SegmentPage`,
`SegmentMember`), written from the event's JSON so that this module needs nothing of the event
but its `id` and `model_dump`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.domain.ids import group_id
from chalicelib.domain.segments import index_value
from chalicelib.errors import ConfigError

if TYPE_CHECKING:
    from chalicelib.adapters.queue.base import Queue
    from chalicelib.adapters.store.base import Store

__all__ = ["MAX_PAGE_SIZE", "SegmentFanout", "SegmentTarget", "member_group", "page_group"]

logger = logging.getLogger(__name__)

#: The most customers one page message lists: its members are enqueued in one `Queue.send` (10
#: per SQS call) within one event worker's invocation.
MAX_PAGE_SIZE = 100


class SegmentTarget(Protocol):
    """What `start` needs of one rule's segment (the rule engine's broadcast plan, `Fanout`): the
    rule's name, the indexed customer attribute it selects by, and the values it selects."""

    rule: str
    attribute: str
    values: Sequence[Any]


class _Event(Protocol):
    id: str

    def model_dump(self, *, mode: str) -> dict: ...


def page_group(event_id: str, attribute: str, value: str) -> str:
    """The FIFO group of one segment's page chain: a chain is read in order, and chains of other
    values run in parallel."""
    return group_id(f"segment:{event_id}:{attribute}:{value}")


def member_group(customer_id: str) -> str:
    """A member's FIFO group: the customer's own (that of an event addressed by customer id), so
    it is ordered with the customer's other events."""
    return group_id(f"customer:{customer_id}")


class SegmentFanout:
    """Turns a broadcast plan into queued pages, and a page into queued members.

    `events_queue` gives the events queue when first needed (the composition root's lazily
    built queue). `page_size` is `events.fanout_page_size`.
    """

    def __init__(self, store: Store, events_queue: Callable[[], Queue], page_size: int = MAX_PAGE_SIZE) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"events.fanout_page_size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")
        self._store = store
        self._queue = events_queue
        self.page_size = page_size

    def start(self, event: _Event, plan: Iterable[SegmentTarget]) -> list[OutgoingMessage]:
        """Enqueue the first page message of every selected segment and return what was sent.
        Rules selecting the same attribute and value share one page chain (its `rules` lists
        them, in plan order). Values that are never indexed (lists, objects, booleans, empty
        text) select nobody and are skipped. Raises `ConfigError` naming the rule when it
        selects by an attribute that is not in `customers.indexed_attributes`."""
        chains: dict[tuple[str, str], list[str]] = {}
        for target in plan:
            if target.attribute not in self._store.indexed_attributes:
                raise ConfigError(f"event rule {target.rule} selects customers by {target.attribute!r}, which is not "
                                  "in customers.indexed_attributes")
            for raw in target.values:
                value = index_value(raw)
                if value is None:
                    logger.info("event %s rule %s: a %s selects nobody", event.id, target.rule, type(raw).__name__)
                    continue
                rules = chains.setdefault((target.attribute, value), [])
                if target.rule not in rules:
                    rules.append(target.rule)
        payload = event.model_dump(mode="json")
        messages = [self._page_message(event.id, payload, rules, attribute, value, None)
                    for (attribute, value), rules in chains.items()]
        if messages:
            self._queue().send(messages)
        return messages

    def page(self, msg: Any) -> list[OutgoingMessage]:
        """Handle a `SegmentPage`: read one page of the segment and enqueue, in one `send`, a
        `SegmentMember` per customer, then the next page's message if more follow. Returns what
        was sent. The index may lag a moment behind the customers (DynamoDB), so the member's
        processing re-reads the customer and its rules decide on what it finds."""
        page = self._store.segment_page(msg.attribute, msg.value, limit=self.page_size, cursor=msg.cursor)
        payload = msg.event.model_dump(mode="json")
        rules = list(msg.rules)
        messages = [self._member_message(msg.event.id, payload, rules, customer_id) for customer_id in page.items]
        if page.cursor is not None:
            messages.append(self._page_message(msg.event.id, payload, rules, msg.attribute, msg.value, page.cursor))
        if messages:
            self._queue().send(messages)
        return messages

    @staticmethod
    def _page_message(event_id: str, event: dict, rules: list[str], attribute: str, value: str,
                      cursor: str | None) -> OutgoingMessage:
        body = {"kind": "segment_page", "event": event, "rules": rules, "attribute": attribute, "value": value,
                "cursor": cursor}
        return OutgoingMessage(body=_json(body), group=page_group(event_id, attribute, value),
                               dedupe_id=_digest(f"segment:{event_id}:{attribute}:{value}:{cursor or ''}"))

    @staticmethod
    def _member_message(event_id: str, event: dict, rules: list[str], customer_id: str) -> OutgoingMessage:
        # One dedupe id per event and customer: a customer reached by two page chains (two
        # attributes) within the queue's dedupe window is queued once, and after it the member's
        # done marker drops the repeat, so each customer is processed once per event.
        body = {"kind": "segment_member", "event": event, "customer_id": customer_id, "rules": rules}
        return OutgoingMessage(body=_json(body), group=member_group(customer_id),
                               dedupe_id=_digest(f"{event_id}:{customer_id}"))


def _json(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
