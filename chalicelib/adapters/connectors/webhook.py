"""Signed webhooks to any HTTPS endpoint, per Standard Webhooks v1 (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

from chalicelib.adapters.connectors.base import MESSAGE_EVENTS, Connector, DeliveryResult
from chalicelib.adapters.connectors.http import raise_for_status
from chalicelib.adapters.connectors.settings.webhook import WebhookSettings
from chalicelib.domain.events import contact_event, customer_event
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.errors import PermanentDeliveryError


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: the base64-decoded bytes after the prefix."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise PermanentDeliveryError("webhook secret is not whsec_ followed by base64") from None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature over `{id}.{timestamp}.{body}`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookConnector(Connector[WebhookSettings]):
    key = "webhook"
    docs_url = "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md"
    Settings = WebhookSettings
    supports_customer_events = True
    takes_case_events = True
    case_timer_events = True
    #: The hub's outbound messages and their statuses, in the same envelope as contacts.
    message_events = MESSAGE_EVENTS

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        return self._post(job.delivery_id, contact_event(job, include_raw=self.settings.include_raw))

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        return self._post(event.delivery_id, customer_event(event))

    def _post(self, message_id: str, payload: dict) -> DeliveryResult:
        body = json.dumps(payload, separators=(",", ":")).encode()
        # The delivery id is stable across retries, so consumers dedupe on `webhook-id`.
        timestamp = int(time.time())
        signatures = " ".join(sign(s, message_id, timestamp, body) for s in self.secrets.get_all(self.settings.secrets))
        headers = {
            **self.settings.headers,
            "content-type": "application/json",
            "user-agent": "omnichannel-hub",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
        response = self.runtime.http.request(
            "POST", self.settings.url, headers=headers, body=body, timeout=self.settings.timeout_seconds
        )
        if response.status == 410:
            # The spec's way for a consumer to say "stop sending": never retried.
            raise PermanentDeliveryError("endpoint answered 410 Gone; disable this destination")
        raise_for_status(response, vendor=f"webhook {urlsplit(self.settings.url).hostname}")
        return DeliveryResult(external_ref=response.headers.get("webhook-receipt") or None)
