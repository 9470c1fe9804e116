"""Customers, their contacts and cases, as the consumer API (and `hubctl`) read and change them.

Built once by the composition root with the store, the queues and the policies, so the API layer
only parses requests and shapes responses. Reads return the views consumers see (an open case
inactive past its limit reads as closed; quality flags; destinations not yet attempted as
pending deliveries). Commands that other systems must hear of (merges, erasure) queue their
customer events here, after the change was committed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.ids import delivery_id
from chalicelib.domain.models import Contact, Customer, Delivery, DeliveryStatus, Direction
from chalicelib.domain.policies import CasePolicy, CustomerLimits, IdentityPolicy, SurvivorshipPolicy
from chalicelib.service.consent import ConsentSettings
from chalicelib.errors import ConcurrentUpdateError, ConflictError, NotFoundError, RequestRejectedError, RuleRefusedError

_MERGE_ID = re.compile(r"mrg_[0-9A-HJKMNP-TV-Z]{26}")
#: What an id from outside may look like: the hub's own (`cus_01J…`, `case_…`) and anything of
#: their alphabet, never what a store key cannot hold (a lone surrogate, a NUL, DynamoDB's 2 KB).
ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,100}")
#: Guarded read-modify-write attempts of a consent statement against concurrent workers.
CONSENT_ATTEMPTS = 3


class InvalidRequestError(RequestRejectedError):
    """A well-formed JSON body with a field or value the route does not take (422), named in
    `detail.field`."""

    http_status = 422
    code = "invalid_request"


class CustomerService:
    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        delivery_queue: Callable[[], Queue],
        identity: IdentityPolicy,
        identity_rules: Callable[[], IdentityRules],
        survivorship: SurvivorshipPolicy,
        cases: CasePolicy,
        limits: CustomerLimits,
        event_destinations: Callable[[], list[str]],
        clock: Callable[[], datetime],
        consent: ConsentSettings | None = None,
        case_event_destinations: Callable[[], list[str]] = list,
        timers: Callable[[], Any] | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._delivery_queue = delivery_queue
        self._identity = identity
        self._identity_rules = identity_rules
        self._survivorship = survivorship
        self._cases = cases
        self._limits = limits
        self._event_destinations = event_destinations
        self._clock = clock
        self._consent = consent or ConsentSettings()
        self._case_event_destinations = case_event_destinations
        #: The case timers' port (`adapters/timers`): a closed case's timers are cancelled.
        self._timers = timers

    # --- reads -------------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> dict:
        """Raises `NotFoundError`."""
        return self.view(self._customer(customer_id))

    def find(self, identifier_text: str) -> list[dict]:
        """The customer holding an identifier (`phone:+49…`), as a list of at most one.
        Raises `InvalidIdentifierError` (400)."""
        identifier = Identifier.parse(identifier_text, default_region=self._identity.default_region)
        customer_id = self._store.find_customer_ids([identifier]).get(identifier.key)
        customer = self._store.get_customer(customer_id) if customer_id else None
        return [self.view(customer)] if customer else []

    def timeline(self, customer_id: str, *, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """A page of the customer's timeline (with that of customers it absorbed), newest first,
        without delivery logs and raw payloads: its contacts and the business events that
        concerned it, told apart by `kind` (`contact` or `event`). Raises `NotFoundError`."""
        from chalicelib.service.timeline import timeline_page

        page = timeline_page(self._store, self._customer(customer_id), limit=limit, cursor=cursor)
        # Outbound messages show the statuses their providers reported (one read each).
        items = [self._reported(c) for c in page.items]
        return [{**c.model_dump(mode="json", exclude={"deliveries", "raw"}), "kind": timeline_kind(c)}
                for c in items], page.cursor

    def contact(self, contact_id: str) -> dict:
        """The contact with its delivery log. Raises `NotFoundError`."""
        contact = self._store.get_contact(contact_id)
        if contact is None:
            raise NotFoundError(f"no contact {contact_id}")
        return {**with_pending_deliveries(self._reported(contact)), "kind": timeline_kind(contact)}

    def _reported(self, contact: Contact) -> Contact:
        """An outbound contact with its provider's status reports folded in (they are recorded
        by the process worker apart from the contact, which only the send worker writes)."""
        if contact.direction != Direction.OUTBOUND or not contact.provider_message_id:
            return contact
        from chalicelib.domain.outbound import with_reported

        return with_reported(contact, self._store.list_statuses(contact.provider, contact.provider_message_id))

    def case(self, case_id: str) -> dict:
        from chalicelib.service.cases import effective

        case = self._store.get_case(case_id)
        if case is None:
            raise NotFoundError(f"no case {case_id}")
        return effective(case, self._clock(), self._cases).model_dump(mode="json")

    def merge_record(self, merge_id: str) -> dict:
        record = self._store.get_merge(merge_id) if _MERGE_ID.fullmatch(merge_id) else None
        if record is None:
            raise NotFoundError(f"no merge {merge_id}")
        return record.model_dump(mode="json")

    def export(self, customer_id: str) -> dict:
        """Everything held about the customer (GDPR Art. 15). Raises `NotFoundError`."""
        from chalicelib.service.gdpr import export_customer

        return export_customer(self._store, self._blobs, customer_id, now=self._clock())

    def view(self, customer: Customer) -> dict:
        """The customer as consumers see it: an open case inactive past the limit is no longer open;
        the customer service windows as of now (`service_windows`)."""
        from chalicelib.domain.golden_record import quality_flags
        from chalicelib.service.cases import is_inactive
        from chalicelib.service.consent import service_windows

        now = self._clock()
        body = customer.model_dump(mode="json")
        if customer.open_case is not None and is_inactive(customer.open_case, now, self._cases):
            body["open_case"] = None
        body["quality_flags"] = quality_flags(customer)
        body["service_windows"] = service_windows(customer, now)
        return body

    # --- commands ----------------------------------------------------------------------------------

    def erase(self, customer_id: str) -> dict:
        """Erase the customer everywhere (GDPR Art. 17); destinations that take customer events
        get `customer.erased`. Idempotent."""
        from chalicelib.service.gdpr import erase_customer

        return erase_customer(self._store, self._blobs, self._delivery_queue(), customer_id, now=self._clock(),
                              event_destinations=self._event_destinations())

    def merge(self, customer_id: str, other_id: Any, *, actor: str) -> dict:
        """Merge two customers (the older survives) under the automatic merges' protection.
        Idempotent. Raises `RequestRejectedError`, `RuleRefusedError` (refused), `NotFoundError`."""
        from chalicelib.service.customer_events import merge_event_messages

        if not isinstance(other_id, str) or not other_id:
            raise RequestRejectedError('body must be {"customer_id": "<the customer to merge with>"}')
        if not ID_SHAPE.fullmatch(other_id):
            raise NotFoundError("no customer with the customer_id given")
        outcome = self._merges().merge(customer_id, other_id, now=self._clock(), trigger=actor, explicit=True)
        if outcome.refusal is not None:
            raise RuleRefusedError(f"the customers are not merged: {outcome.refusal}")
        if outcome.record is not None:
            self._announce(merge_event_messages(outcome.record, destinations=self._event_destinations()))
        return {"merge_id": outcome.record.id if outcome.record else None,
                "customer": self.view(self._customer(outcome.customer_id))}

    def unmerge(self, customer_id: str, merge_id: Any, *, actor: str) -> dict:
        """Reverse a merge (the given one, or the customer's latest). Idempotent."""
        from chalicelib.service.customer_events import merge_event_messages

        if merge_id is not None and not (isinstance(merge_id, str) and _MERGE_ID.fullmatch(merge_id)):
            raise RequestRejectedError('merge_id must be a merge id such as "mrg_0123456789ABCDEFGHJKMNPQRS"')
        record = self._merges().unmerge(customer_id, now=self._clock(), actor=actor, merge_id=merge_id)
        self._announce(merge_event_messages(record, destinations=self._event_destinations()))
        customers = [self._store.get_customer(record.survivor_id), self._store.get_customer(record.absorbed_id)]
        return {
            "merge_id": record.id,
            "reverted_at": record.reverted_at.isoformat().replace("+00:00", "Z"),
            "customers": [self.view(c) for c in customers if c is not None],
        }

    def link(self, customer_id: str, identifier_text: Any) -> dict:
        """Link an identifier explicitly (`external:CRM-1042`). Raises `ConflictError` (another
        customer holds it), `RuleRefusedError`, `InvalidIdentifierError`."""
        from chalicelib.service.commands import link_identifier

        if not isinstance(identifier_text, str):
            raise RequestRejectedError('body must be {"identifier": "kind:value"}')
        identifier = Identifier.parse(identifier_text, default_region=self._identity.default_region)
        customer = link_identifier(self._store, self._identity_rules(), customer_id, identifier, now=self._clock())
        return self.view(customer)

    def set_attributes(self, customer_id: str, values: Any, *, source: Any) -> dict:
        """Attributes a source states about the customer; null withdraws one. Raises
        `RequestRejectedError` naming the attribute or limit that is wrong."""
        from chalicelib.service.commands import set_attributes

        self._limits.check_attributes_request(source, values)
        customer = set_attributes(self._store, customer_id, values, source=source, now=self._clock(),
                                  rules=self._survivorship, limits=self._limits)
        return self.view(customer)

    def set_consent(self, customer_id: str, body: Any, *, actor: str, request_id: str | None) -> dict:
        """Record consent statements (one, or a list) with the caller as source (`api:<key>`) and
        the statement's evidence, else the API call's id. Answers the customer's ledger. Raises
        `InvalidRequestError` (422) naming the field, `NotFoundError`, and `ConflictError` for a
        customer merged into another (state consent on the survivor: it is the same person)."""
        from chalicelib.service.consent import apply_statements, parse_statements

        try:
            statements = parse_statements(body)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), detail={"field": str(exc).partition(":")[0]}) from None
        evidence = f"request:{request_id}" if request_id else None
        for attempt in range(CONSENT_ATTEMPTS):
            customer = self._customer(customer_id)
            if customer.merged_into is not None:
                raise ConflictError(f"customer {customer_id} was merged into {customer.merged_into}; change that customer",
                                    detail={"merged_into": customer.merged_into})
            now = self._clock()
            consent = apply_statements(customer, statements, source=actor, evidence=evidence, at=now,
                                       limit=self._consent.history_limit)
            updated = customer.model_copy(update={"consent": consent, "updated_at": now, "version": customer.version + 1})
            try:
                self._store.update_customer(updated)
            except ConcurrentUpdateError:
                if attempt == CONSENT_ATTEMPTS - 1:
                    raise
                continue
            return {"customer_id": customer_id, "consent": updated.model_dump(mode="json")["consent"]}
        raise AssertionError("unreachable")

    def close_case(self, case_id: str) -> dict:
        from chalicelib.service.commands import close_case

        from chalicelib.service.customer_events import case_event_messages

        closed = close_case(self._store, case_id, now=self._clock(), settings=self._cases, timers=self._timers)
        # Announced once committed; a repeated close announces the same event (its id derives
        # from the close), which the queue and the deliverer drop.
        self._announce(case_event_messages("case.closed", closed, occurred_at=closed.closed_at or self._clock(),
                                           destinations=self._case_event_destinations(), reason=closed.close_reason,
                                           by_destination=closed.closed_by))
        return closed.model_dump(mode="json")

    # --- plumbing ----------------------------------------------------------------------------------

    def _customer(self, customer_id: str) -> Customer:
        customer = self._store.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer {customer_id}")
        return customer

    def _merges(self):
        from chalicelib.service.merge import Merges

        return Merges(self._store, self._identity, self._survivorship, self._cases, self._limits)

    def _announce(self, messages: list[OutgoingMessage]) -> None:
        if messages:
            self._delivery_queue().send(messages)


def timeline_kind(contact: Contact) -> str:
    """`event` for a business event's timeline entry (a contact with direction `event`), else
    `contact`: consumers tell the two apart without knowing every direction."""
    return "event" if contact.direction == "event" else "contact"


def with_pending_deliveries(contact: Contact) -> dict:
    """A contact whose deliveries include the routed destinations not yet attempted, as pending."""
    attempted = {d.destination for d in contact.deliveries}
    pending = [
        Delivery(
            id=delivery_id(contact.id, name), contact_id=contact.id, destination=name,
            status=DeliveryStatus.PENDING, updated_at=contact.received_at,
        )
        for name in contact.routing.destinations
        if name not in attempted
    ]
    body = contact.model_dump(mode="json")
    body["deliveries"] = [d.model_dump(mode="json") for d in [*contact.deliveries, *pending]]
    return body
