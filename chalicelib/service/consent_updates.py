"""Consent as the send path reads and writes it (the ledger itself: domain/consent.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chalicelib.adapters.store.base import Store
from chalicelib.domain.consent import OPTED_OUT, PURPOSES, allows, record
from chalicelib.domain.models import Channel, Contact, Customer
from chalicelib.errors import ConcurrentUpdateError

UPDATE_ATTEMPTS = 3


def consent_allows(customer: Customer, channel: Channel, purpose: str) -> bool:
    """Whether the ledger lets the hub send `purpose` messages on `channel`."""
    return allows(customer.consent, channel.value, purpose)


def record_opt_out(store: Store, contact: Contact, *, source: str, evidence: str, now: datetime,
                   purposes: Sequence[str] = PURPOSES) -> None:
    """Record that the contact's customer opted out of its channel for `purposes` (a provider's
    opt-out error or report on one of the hub's messages: every purpose, or marketing only for
    WhatsApp's 131050), guarded by the customer's version like every write. Consent for the
    other purposes stays as it was.

    Raises `ValueError` for an unknown purpose (before any write)."""
    unknown = [p for p in purposes if p not in PURPOSES]
    if unknown or not purposes:
        raise ValueError(f"opt-out purposes must be some of {', '.join(PURPOSES)}, not {unknown or 'none'}")
    for _ in range(UPDATE_ATTEMPTS):
        customer = store.get_customer(contact.customer_id)
        if customer is None:
            return
        ledger = customer.consent
        for purpose in purposes:
            ledger = record(ledger, contact.channel.value, purpose, OPTED_OUT, source, evidence, now)
        updated = customer.model_copy(update={"consent": ledger, "version": customer.version + 1, "updated_at": now})
        try:
            store.update_customer(updated)
            return
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(f"customer {contact.customer_id} kept changing while an opt-out was recorded")
