"""What the hub hears back about its own messages: provider status reports matched to outbound
contacts, and the events destinations take about them.

Reports are recorded by the process worker apart from the contact (`Store.record_status`), so
the send worker stays the contact document's only writer and no report is ever lost to a race;
reads fold them in (`domain/outbound.py: with_reported`). This service matches a report to its
contact (one lookup), records an opt-out it carries, and announces `message.status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import Contact, OutboundStatus, StatusEvent
from chalicelib.domain.outbound import OutboundMessage, outbound_status, with_reported
from chalicelib.errors import PermanentDeliveryError, RecipientOptedOutError
from chalicelib.service.message_events import SENT, STATUS, MessageEvents, agent_origin

logger = logging.getLogger(__name__)


class OutboundReports:
    def __init__(self, store: Store, events: MessageEvents, *,
                 wants: Callable[[str], bool],
                 opted_out: Callable[[Contact, str, str, tuple[str, ...]], None] = lambda *opt_out: None) -> None:
        """`wants(event_type)`: whether any destination takes it; `opted_out(contact, source,
        evidence, purposes)` records an opt-out of `purposes` for the contact's channel in the
        customer's consent ledger."""
        self._store = store
        self._events = events
        self._wants = wants
        self._opted_out = opted_out

    def status_reported(self, event: StatusEvent) -> None:
        """A provider's report on a message: matched to the hub's outbound contact, if it is one."""
        contact_id = self._store.find_sent(event.provider, event.provider_message_id)
        if contact_id is None:
            return  # a message the hub did not send (or whose send is not recorded yet: see `sent`)
        failed = outbound_status(event.status) == OutboundStatus.FAILED
        if not event.opted_out and not failed and not self._wants(STATUS):
            return
        contact = self._store.get_contact(contact_id)
        if contact is None:
            return  # erased
        if event.opted_out:
            self._opted_out(contact, f"provider:{event.provider}:{event.error_code or event.status}",
                            f"status:{event.provider}:{event.provider_message_id}", tuple(event.opt_out_purposes))
        if self._wants(STATUS) or (failed and agent_origin(contact)):
            # A failure of an agent's reply goes back to the agent's ticket as a note.
            reported = with_reported(contact, self._store.list_statuses(event.provider, event.provider_message_id))
            self._events.publish(reported, STATUS)

    # --- the send worker's outcomes -----------------------------------------------------------------

    def sent(self, contact: Contact, message: OutboundMessage) -> None:
        self._events.publish(contact, SENT)
        if self._wants(STATUS) and contact.provider_message_id:
            # Reports that arrived before the send was recorded found no contact: announce them now.
            early = self._store.list_statuses(contact.provider, contact.provider_message_id)
            if early:
                self._events.publish(with_reported(contact, early), STATUS)

    def refused(self, contact: Contact, message: OutboundMessage, error: PermanentDeliveryError) -> None:
        if isinstance(error, RecipientOptedOutError):
            self._opted_out(contact, f"error:{contact.provider}:{error.provider_code or error.code}",
                            f"contact:{contact.id}", tuple(error.purposes))
        self._events.publish(contact, STATUS)
