"""Consent as the send path reads and writes it (the ledger itself: domain/consent.py)."""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import Channel, Contact, Customer


def consent_allows(customer: Customer, channel: Channel, purpose: str) -> bool:
    """Whether the ledger lets the hub send `purpose` messages on `channel`."""
    state = customer.consent.get(channel.value)
    return state != "opted_out"


def record_opt_out(store: Store, contact: Contact, *, source: str, evidence: str, now: datetime) -> None:
    """Record that the contact's customer opted out of its channel."""
    from chalicelib.errors import ConcurrentUpdateError

    for _ in range(3):
        customer = store.get_customer(contact.customer_id)
        if customer is None:
            return
        updated = customer.model_copy(update={"consent": {**customer.consent, contact.channel.value: "opted_out"},
                                              "version": customer.version + 1, "updated_at": now})
        try:
            store.update_customer(updated)
            return
        except ConcurrentUpdateError:
            continue
