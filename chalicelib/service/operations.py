"""What an operator does to keep the hub flowing: the exception queue, dead letters and their
replay, webhook items no adapter could read, and explaining a routing decision.

Built once by the composition root; the consumer API (scope `operations`) and `hubctl` call it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.errors import RequestRejectedError

#: Dead letters one `POST /v1/dead-letters/replay` queues again: by default, and at most.
REPLAY_BATCH_DEFAULT = 25
REPLAY_BATCH_MAX = 50
#: A kind filter reads at most this many store pages of this many letters per call.
KIND_SCAN_PAGES = 5
KIND_SCAN_PAGE_SIZE = 100


class Operations:
    def __init__(self, *, store: Store, delivery_queue: Callable[[], Queue], config, router: Callable[[], Any],
                 enricher: Callable[[], Any], clock: Callable[[], datetime],
                 outbound_queue: Callable[[], Queue | None] = lambda: None) -> None:
        self._store = store
        self._delivery_queue = delivery_queue
        self._outbound_queue = outbound_queue
        self._config = config
        self._router = router
        self._enricher = enricher
        self._clock = clock

    # --- the exception queue -----------------------------------------------------------------------

    def parked(self, *, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """The contacts rules parked for manual handling, oldest first."""
        page = self._store.list_parked(limit=limit, cursor=cursor)
        return [entry.model_dump(mode="json") for entry in page.items], page.cursor

    def release(self, contact_id: str, choice: Any, *, actor: str) -> dict:
        """Release a parked contact with a chosen route (`service/exceptions.Release`). Raises
        `RequestRejectedError` naming the field that is wrong. Idempotent."""
        from pydantic import ValidationError

        from chalicelib.service.customers import timeline_kind, with_pending_deliveries
        from chalicelib.service.exceptions import Release, release

        try:
            route = Release.model_validate(choice)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RequestRejectedError(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None
        contact = release(self._store, self._delivery_queue(), self._config, contact_id, route, actor=actor,
                          now=self._clock())
        # The contact as `GET /v1/contacts/{id}` shows it.
        return {**with_pending_deliveries(contact), "kind": timeline_kind(contact)}

    # --- dead letters ------------------------------------------------------------------------------

    def dead_letters(self, *, destination: str | None, limit: int, cursor: str | None = None,
                     kind: str | None = None) -> tuple[list[dict], str | None]:
        """A page of dead letters in id order, optionally of one destination and one kind
        (`DEAD_LETTER_KINDS`). The store keys letters by id only, so a kind is a filter over what
        it reads: at most `KIND_SCAN_PAGES` store pages per call, and a page may then hold fewer
        than `limit` letters (even none) with a `next_cursor` to go on from. Raises
        `RequestRejectedError` for an unknown kind."""
        from chalicelib.service.dead_letters import DEAD_LETTER_KINDS, letter_kind, summary

        if kind is None:
            page = self._store.list_dead_letters(destination=destination, limit=limit, cursor=cursor)
            return [summary(letter) for letter in page.items], page.cursor
        if kind not in DEAD_LETTER_KINDS:
            raise RequestRejectedError(f"kind must be one of {', '.join(DEAD_LETTER_KINDS)}",
                                       detail={"parameter": "kind"})
        found: list[dict] = []
        for _ in range(KIND_SCAN_PAGES):
            page = self._store.list_dead_letters(destination=destination, limit=KIND_SCAN_PAGE_SIZE, cursor=cursor)
            matching = [letter for letter in page.items if letter_kind(letter) == kind]
            if len(found) + len(matching) >= limit:
                taken = matching[:limit - len(found)]
                found += [summary(letter) for letter in taken]
                # The cursor is the last id returned (ids are the store's keyset order), unless
                # this page holds no more of the kind and the store has no more pages.
                rest = len(matching) > len(taken) or page.cursor is not None
                return found, taken[-1].id if rest else None
            found += [summary(letter) for letter in matching]
            cursor = page.cursor
            if cursor is None:
                return found, None
        return found, cursor

    def replay(self, letter_id: str) -> dict:
        """Queue a dead delivery again, with its delivery id (the vendor sees the same
        idempotency key). Raises `NotFoundError`."""
        from chalicelib.service.dead_letters import replay

        # The outbound queue only when the letter is a message's (a stage may not have one yet).
        letter = replay(self._store, self._delivery_queue(), letter_id, now=self._clock(),
                        outbound_queue=self._outbound_queue)
        return {"id": letter.id, "destination": letter.destination, "status": "queued"}

    def replay_destination(self, destination: str, *, limit: int | None = None) -> int:
        """Queue every dead letter of a destination again; how many."""
        from chalicelib.service.dead_letters import replay_destination

        return len(replay_destination(self._store, self._delivery_queue(), destination, now=self._clock(), limit=limit,
                                      outbound_queue=self._outbound_queue))

    def replay_batch(self, body: Any) -> dict:
        """`POST /v1/dead-letters/replay`: `{"destination", "limit"?}`, up to `limit` (1-50,
        default 25) of the destination's dead letters queued again, oldest first; `more` says
        whether any are left, so a client repeats the call until it is false. Bounded per call
        so a destination with thousands of letters never outlasts one API request. Raises
        `RequestRejectedError` (400) naming the field at fault."""
        if not isinstance(body, dict):
            raise RequestRejectedError("body must be a JSON object")
        unknown = sorted(str(key)[:40] for key in body if key not in ("destination", "limit"))
        if unknown:
            raise RequestRejectedError(f"unknown field {unknown[0]} (use destination, limit)", detail={"field": unknown[0]})
        destination, limit = body.get("destination"), body.get("limit", REPLAY_BATCH_DEFAULT)
        if not isinstance(destination, str) or not destination.strip():
            raise RequestRejectedError("destination is required: the destination whose dead letters to replay",
                                       detail={"field": "destination"})
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= REPLAY_BATCH_MAX:
            raise RequestRejectedError(f"limit must be a whole number from 1 to {REPLAY_BATCH_MAX}", detail={"field": "limit"})
        queued = self.replay_destination(destination, limit=limit)
        more = bool(self._store.list_dead_letters(destination=destination, limit=1).items)
        return {"destination": destination, "queued": queued, "more": more}

    # --- webhook items kept raw --------------------------------------------------------------------

    def today(self) -> date:
        """The UTC day the unhandled list shows by default."""
        return self._clock().date()

    def unhandled(self, *, day: date | None, provider: str | None, limit: int,
                  cursor: str | None = None) -> tuple[list[dict], str | None]:
        """What arrived on `day` (UTC, default today) that no adapter could read."""
        page = self._store.list_unhandled(day=day or self.today(), provider=provider, limit=limit,
                                          cursor=cursor)
        return [{"id": event.id, **event.model_dump(mode="json", exclude={"kind"})} for event in page.items], page.cursor

    # --- routing -----------------------------------------------------------------------------------

    def explain(self, body: Any) -> dict:
        """What the rules in force decide for a contact, with the trace; stores and sends nothing."""
        from chalicelib.service.explain import explain

        return explain(body, router=self._router(), enricher=self._enricher(), now=self._clock())
