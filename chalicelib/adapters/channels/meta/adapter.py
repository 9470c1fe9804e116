"""Meta's one webhook callback for WhatsApp Cloud API, Messenger and Instagram messaging: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages

One app, one callback URL, one signature: the body's `object` says which product the entries
belong to (`whatsapp.py`, `messenger.py`), and what both share lives in `core.py`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import ClassVar

from pydantic import BaseModel

from chalicelib.adapters.channels.base import (
    AdapterServices,
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.channels.json_body import load_object, safe
from chalicelib.adapters.channels.meta.core import (
    SIGNATURE_HEADER,
    MetaSettings,
    answer_handshake,
    cleaner,
    compute_signature,
    verify_signature,
)
from chalicelib.adapters.channels.meta.messenger import MESSAGING_OBJECTS, MessengerPlatform
from chalicelib.adapters.channels.meta.whatsapp import OBJECT as WHATSAPP
from chalicelib.adapters.channels.meta.whatsapp import WhatsAppCloud, simulated_payload
from chalicelib.errors import MalformedPayloadError
from chalicelib.secrets import SecretResolver

__all__ = ["MetaAdapter", "MetaSettings", "SIGNATURE_HEADER", "compute_signature"]


class MetaAdapter(ChannelAdapter[MetaSettings]):
    """WhatsApp Cloud API, Messenger and Instagram messages and receipts, one callback URL per Meta app."""

    key: ClassVar[str] = "meta"
    docs_url: ClassVar[str] = (
        "https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages"
    )
    Settings: ClassVar[type[BaseModel]] = MetaSettings
    media_sources = ("chalicelib.adapters.channels.meta.whatsapp_media:WhatsAppCloudSource",
                     "chalicelib.adapters.channels.meta.cdn_media:MetaCdnSource")
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    # By path: the ingest Lambda never imports the sending code.
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.meta.sender:MetaSender"

    def __init__(self, settings: MetaSettings, secrets: SecretResolver, services: AdapterServices | None = None) -> None:
        super().__init__(settings, secrets, services)
        self._whatsapp = WhatsAppCloud(self.key, self.unhandled)
        self._messaging = MessengerPlatform(self.key, self.unhandled)

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        return answer_handshake(request, self.secrets.get_all(self.settings.verify_tokens))

    def verify(self, request: WebhookRequest) -> None:
        verify_signature(request, self.secrets.get_all(self.settings.app_secrets))

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        data = load_object(request.body)
        product, entries = data.get("object"), data.get("entry")
        if not isinstance(product, str) or not product:
            raise MalformedPayloadError('body has no "object" string')
        if not isinstance(entries, list):
            raise MalformedPayloadError('body has no "entry" list')
        if product != WHATSAPP and product not in MESSAGING_OBJECTS:
            reason = f"object {safe(product[:64])!r} is not a product this adapter handles"
            return ParsedWebhook(unhandled=[self.unhandled(reason, data, request)])
        parsed = ParsedWebhook()
        clean = cleaner(request.body)
        for i, entry in enumerate(entries):
            if product == WHATSAPP:
                self._whatsapp.entry(entry, f"entry[{i}]", request, parsed, clean)
            else:
                self._messaging.entry(MESSAGING_OBJECTS[product], entry, f"entry[{i}]", request, parsed, clean)
        return parsed

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        return WebhookResponse(status=200, body="EVENT_RECEIVED", content_type="text/plain")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        """A WhatsApp text from `customer`'s number, signed with the first app secret."""
        payload = simulated_payload(customer, "wamid." + uuid.uuid4().hex, int(time.time()))
        # Compact, non-ASCII escaped: the bytes Meta sends and signs.
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = compute_signature(self.secrets.get(self.settings.app_secrets[0]), body)
        return SimulatedRequest(
            path=f"/webhooks/{self.key}",
            body=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )
