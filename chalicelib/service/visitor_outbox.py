"""The web chat's way out: replies wait in the visitor's outbox until the widget fetches them.

The hub is the web chat's provider, so "sending" a web chat message is appending it to one
document per visitor (`<site>/<visitor>`), and the widget's poll is one key lookup of that
document: cheap enough to run every few seconds. The widget proves which visitor it speaks for
with the `visitor_token` the hub handed it when it posted (an HMAC of site and visitor under
the hub's link secrets), so nobody reads another visitor's replies by guessing an id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, Field

from chalicelib.adapters.store.base import Store
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage

#: Replies kept per visitor: a widget that was away longer than this many replies reloads the
#: conversation from the site's own backend.
MAX_ENTRIES = 100
TOKEN_PURPOSE = b"webchat-visitor-token:v1\n"


class OutboxEntry(BaseModel):
    id: str
    text: str | None = None
    subject: str | None = None
    attachments: list[OutboundAttachment] = Field(default_factory=list)
    sent_at: datetime


class Outbox(BaseModel):
    messages: list[OutboxEntry] = Field(default_factory=list)


def outbox_key(site_id: str, visitor_id: str) -> str:
    return f"{site_id}/{visitor_id}"


def outbox_keys_of(identifiers) -> tuple[str, ...]:
    """The outboxes of a customer: one per web chat visitor id it holds (erasure deletes them)."""
    return tuple(outbox_key(i.scope, i.value) for i in identifiers if i.kind == "webchat" and i.scope)


class StoreVisitorOutbox:
    """`VisitorOutbox` (adapters/channels/sending.py) on the hub's store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def append(self, site_id: str, visitor_id: str, message: OutboundMessage, *, sent_at: datetime) -> None:
        """Add a reply once (a redelivered send finds it there). The send worker is the only
        writer, and a customer's messages on one channel are sent in order, one at a time."""
        key = outbox_key(site_id, visitor_id)
        outbox = self._read(key)
        if any(entry.id == message.id for entry in outbox.messages):
            return
        outbox.messages.append(OutboxEntry(id=message.id, text=message.text, subject=message.subject,
                                           attachments=message.attachments, sent_at=sent_at))
        outbox.messages = outbox.messages[-MAX_ENTRIES:]
        self._store.put_outbox(key, outbox.model_dump_json())

    def after(self, site_id: str, visitor_id: str, cursor: str | None) -> list[OutboxEntry]:
        """Replies newer than `cursor` (a message id), oldest first; all kept ones without one.
        Ids are time-ordered, so an unknown cursor still returns what is newer."""
        messages = self._read(outbox_key(site_id, visitor_id)).messages
        return [entry for entry in messages if cursor is None or entry.id > cursor]

    def _read(self, key: str) -> Outbox:
        doc = self._store.get_outbox(key)
        return Outbox.model_validate_json(doc) if doc else Outbox()


class VisitorTokens:
    """Issue and check the bearer token that binds a widget to its site and visitor."""

    def __init__(self, secrets: Callable[[], list[str]]) -> None:
        self._secrets = secrets

    def issue(self, site_id: str, visitor_id: str) -> str:
        return _token(self._secrets()[0], site_id, visitor_id)

    def valid(self, site_id: str, visitor_id: str, token: str) -> bool:
        presented = token.encode("ascii", "replace")
        matched = False
        for secret in self._secrets():  # every secret, so rotation keeps old widgets working
            matched |= hmac.compare_digest(_token(secret, site_id, visitor_id).encode(), presented)
        return matched


def _token(secret: str, site_id: str, visitor_id: str) -> str:
    mac = hmac.new(secret.encode(), TOKEN_PURPOSE + f"{site_id}\n{visitor_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
