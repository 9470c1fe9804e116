"""Store contract, two-way records: the link from a destination's ticket back to its case, the
ticket's state kept with the reference, and the conditional outbound write an agent reply's
idempotency rests on, the same on every backend (SQLite, DynamoDB on moto)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.adapters.store.base import Erasure
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import CaseStatus, ExternalRef, ExternalState
from chalicelib.errors import ConcurrentUpdateError, ConflictError
from tests.contract.test_store_contract import T0, WEEK, person_with_open_case
from tests.contract.test_store_outbound_records import outbound


def phone(value: str) -> Identifier:
    return Identifier(kind=IdentifierKind.PHONE, value=value)


def test_a_ticket_reference_leads_back_to_its_case_and_an_older_ticket_still_does(store):
    _, case, _ = person_with_open_case(store, phone("+4915112345678"))
    assert store.find_case_by_ref("helpdesk", "35436") is None

    store.put_case_ref(case.id, "helpdesk", "35436")
    assert store.find_case_by_ref("helpdesk", "35436") == case.id
    assert store.find_case_by_ref("crm", "35436") is None

    # A follow-up ticket replaces the reference; callbacks about the closed one still find the case.
    store.put_case_ref(case.id, "helpdesk", "35437")
    assert store.get_case(case.id).external_refs["helpdesk"].ref == "35437"
    assert store.find_case_by_ref("helpdesk", "35436") == case.id
    assert store.find_case_by_ref("helpdesk", "35437") == case.id


def test_the_tickets_state_is_kept_with_its_reference_and_read_as_the_cases_external_state(store):
    customer, case, _ = person_with_open_case(store, phone("+4915112345678"))
    store.put_case_ref(case.id, "helpdesk", "35436")
    state = ExternalState(state="open", vendor_status="pending", assignee="Alex Agent", priority="high",
                          updated_at=T0, ticket="35436")

    store.commit_ticket_state(case, ExternalRef(destination="helpdesk", ref="35436", state=state))

    stored = store.get_case(case.id)
    assert stored.external_state == {"helpdesk": state}
    assert stored.external_refs["helpdesk"].state == state
    assert store.get_customer(customer.id).version == customer.version  # a state alone leaves the customer be
    # The process worker's next write of the case (its document) keeps the state apart.
    store.update_customer(customer.model_copy(update={"version": customer.version + 1}),
                          cases=(stored.model_copy(update={"contact_count": 9}),))
    assert store.get_case(case.id).external_state == {"helpdesk": state}
    assert store.get_case(case.id).contact_count == 9


def test_closing_with_the_ticket_writes_case_and_customer_together_or_not_at_all(store):
    customer, case, _ = person_with_open_case(store, phone("+4915112345678"))
    store.put_case_ref(case.id, "helpdesk", "35436")
    closed = case.model_copy(update={"status": CaseStatus.CLOSED, "closed_at": T0, "close_reason": "vendor_closed",
                                     "closed_by": "helpdesk"})
    ref = ExternalRef(destination="helpdesk", ref="35436",
                      state=ExternalState(state="closed", vendor_status="solved", updated_at=T0))

    stale = customer.model_copy(update={"open_case": None, "version": customer.version})  # not the next version
    with pytest.raises(ConcurrentUpdateError):
        store.commit_ticket_state(closed, ref, customer=stale)
    assert store.get_case(case.id).status == CaseStatus.OPEN
    assert store.get_case(case.id).external_state == {}

    store.commit_ticket_state(closed, ref, customer=customer.model_copy(update={
        "open_case": None, "version": customer.version + 1}))
    stored = store.get_case(case.id)
    assert (stored.status, stored.close_reason, stored.closed_by) == (CaseStatus.CLOSED, "vendor_closed", "helpdesk")
    assert stored.external_state["helpdesk"].state == "closed"
    assert store.get_customer(customer.id).open_case is None


def test_an_outbound_contact_written_only_if_new_is_written_once(store):
    first = outbound(text="Ihr Paket kommt morgen.")
    store.commit_outbound(first, only_new=True)
    with pytest.raises(ConflictError):
        store.commit_outbound(first.model_copy(update={"text": "a retry must not overwrite"}), only_new=True)
    assert store.get_contact(first.id).text == "Ihr Paket kommt morgen."
    # Without the condition a write replaces it, as the send worker's record does.
    store.commit_outbound(first.model_copy(update={"text": "replaced"}))
    assert store.get_contact(first.id).text == "replaced"


def test_erasure_removes_the_links_from_the_customers_tickets(store):
    customer, case, contact = person_with_open_case(store, phone("+4915112345678"))
    store.put_case_ref(case.id, "helpdesk", "35436")

    store.erase_customer(Erasure(
        customer_id=customer.id, identifier_keys=(), contact_ids=(contact.id,), case_ids=(case.id,), thread_keys=(),
        dedupe_keys=(), merge_ids=(), erased_at=T0, tombstone_expires_at=T0 + WEEK,
    ))

    assert store.get_case(case.id) is None
    assert store.find_case_by_ref("helpdesk", "35436") is None


def test_references_are_taken_as_given(store):
    """Vendors' references are text the vendor chose: a colon or a slash in one is just text (the
    destination name before it cannot hold a colon, so the link key stays unambiguous)."""
    _, case, _ = person_with_open_case(store, phone("+4915112345678"), created=T0 + timedelta(hours=1))
    store.put_case_ref(case.id, "sf", "500Dn00000AbCdE:IAA/x")
    assert store.find_case_by_ref("sf", "500Dn00000AbCdE:IAA/x") == case.id
    assert store.find_case_by_ref("sf", "500Dn00000AbCdE") is None
