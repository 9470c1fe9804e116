"""HubSpot app webhooks: a ticket's pipeline stage, owner and priority follow the hub case
(https://developers.hubspot.com/docs/api/webhooks).

HubSpot posts a JSON array of up to 100 events, signed with the app's client secret
(`X-HubSpot-Signature-v3`, https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation).
What a HubSpot ticket can tell the hub is its properties: `hs_pipeline_stage` (closes and reopens the
case), `hubspot_owner_id` (assignee) and `hs_ticket_priority`.

Agent replies are not relayed. HubSpot tickets have no reply thread: the hub writes the customer's
messages into the ticket as notes, and notes are internal. An agent who answers in HubSpot's inbox
answers on a conversations thread, which HubSpot itself delivers on that thread's own channel
(email, chat, ...); the hub's tickets have no such thread, and relaying a thread's message would
send the answer twice. `conversation.newMessage` events are therefore skipped on purpose.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from chalicelib.adapters.connectors.settings.hubspot import (  # noqa: F401 (re-exported)
    DEFAULT_CLOSED_STAGES,
    HubSpotCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
)
from chalicelib.domain.models import CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, SignatureError
from chalicelib.signing.compare import hmac_sha256, signed_by_any
from chalicelib.signing.window import check_window

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
#: HubSpot batches at most 100 events per request (webhooks guide); more is not HubSpot's shape.
MAX_EVENTS = 100
#: The ticket object type in generic (`object.*`) events' `objectTypeId`.
TICKET_TYPE_ID = "0-5"
STAGE = "hs_pipeline_stage"
OWNER = "hubspot_owner_id"
PRIORITY = "hs_ticket_priority"
FOLLOWED = (STAGE, OWNER, PRIORITY)
#: `hs_ticket_priority` → the hub's priority words (the connector's `DEFAULT_PRIORITIES` reversed).
PRIORITIES = {"LOW": "low", "MEDIUM": "normal", "HIGH": "high", "URGENT": "urgent"}
#: HubSpot decodes these in the request URI before signing it (request-validation docs, v3 table).
_SIGNED_DECODED = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)
#: Event types the hub understands and skips: object lifecycle events a subscription may include.
_SKIPPED_ACTIONS = ("creation", "deletion", "merge", "restore", "associationChange", "privacyDeletion")


class HubSpotCallbacks(VendorCallbacks):
    takes_notes: ClassVar[bool] = True
    settings: HubSpotCallbackSettings

    # --- verify ----------------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        """v3 only: v1 and v2 sign no timestamp (a captured request could be replayed forever),
        and v1 not even the URL."""
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} (the hub accepts only HubSpot's v3 signature)")
        timestamp = (request.header(TIMESTAMP_HEADER) or "").strip()
        if not timestamp:
            raise SignatureError(f"missing {TIMESTAMP_HEADER}")
        if not re.fullmatch(r"[0-9]{1,15}", timestamp):
            raise SignatureError(f"{TIMESTAMP_HEADER} must be unix milliseconds")
        check_window(int(timestamp) / 1000, request.received_at, max_age=self.settings.max_age_seconds,
                     field=TIMESTAMP_HEADER, setting="callbacks.max_age_seconds")
        method = request.method.upper().encode()
        for uri in signed_uris(str(self.settings.public_url), request.query):
            message = method + uri.encode("utf-8") + request.body + timestamp.encode()
            if signed_by_any(lambda secret, signed=message: base64.b64encode(hmac_sha256(secret, signed)),
                             self.secrets(), signature.encode()):
                return
        raise SignatureError(f"{SIGNATURE_HEADER} does not match (client secret, or callbacks.public_url "
                             f"differs from the app's target URL)")

    # --- parse -----------------------------------------------------------------------------------

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        try:
            events = json.loads(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedPayloadError("body is not JSON") from None
        if not isinstance(events, list):
            raise MalformedPayloadError("body must be a JSON array of HubSpot webhook events")
        if len(events) > MAX_EVENTS:
            raise MalformedPayloadError(f"body holds {len(events)} events; HubSpot sends at most {MAX_EVENTS}")
        parsed = ParsedCallback()
        for index, event in enumerate(events):
            self._event(event, index, request, parsed)
        return parsed

    def _event(self, event: Any, index: int, request: CallbackRequest, parsed: ParsedCallback) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("subscriptionType"), str):
            parsed.unhandled.append(self.unhandled(f"[{index}] is not a HubSpot event (no subscriptionType)",
                                                   event, request))
            return
        kind = event["subscriptionType"]
        portal = _text(event.get("portalId"))
        if self.settings.portal_id and portal != self.settings.portal_id:
            parsed.ignored.append(f"{kind} of HubSpot account {portal}, not {self.settings.portal_id}")
            return
        if kind.startswith("conversation."):
            parsed.ignored.append(f"{kind}: HubSpot delivers conversation messages on the thread's own "
                                  f"channel; the hub's tickets have no thread to relay")
            return
        object_type, _, action = kind.partition(".")
        if action == "propertyChange" and (object_type == "ticket" or (
                object_type == "object" and _text(event.get("objectTypeId")) == TICKET_TYPE_ID)):
            self._ticket_change(event, index, request, parsed)
        elif action == "propertyChange" and object_type == "object":
            parsed.ignored.append(f"{kind} of object type {_text(event.get('objectTypeId'))}, not a ticket")
        elif action == "propertyChange" or action in _SKIPPED_ACTIONS:
            parsed.ignored.append(f"{kind}: not a ticket property the hub follows")
        else:
            parsed.unhandled.append(self.unhandled(f"[{index}] subscriptionType {kind!r} is unknown",
                                                   event, request))

    def _ticket_change(self, event: dict, index: int, request: CallbackRequest, parsed: ParsedCallback) -> None:
        ticket = _text(event.get("objectId"))
        prop = _text(event.get("propertyName"))
        if not ticket or not prop:
            parsed.unhandled.append(self.unhandled(f"[{index}] ticket property change without objectId or "
                                                   f"propertyName", event, request))
            return
        if prop not in FOLLOWED:
            parsed.ignored.append(f"ticket property {prop} is not followed")
            return
        echo = self._echo(event)
        if echo is not None:
            parsed.ignored.append(echo)
            return
        value = _text(event.get("propertyValue")) or ""
        if prop == STAGE and not value:
            parsed.ignored.append(f"ticket {ticket}: empty {STAGE}")
            return
        parsed.items.append(CaseStatusChange(
            destination=self.destination, ticket=ticket,
            # HubSpot says eventId "is not guaranteed to be unique"; the event's own coordinates
            # are, and a redelivery repeats them (only attemptNumber changes).
            event_id=event_digest(_text(event.get("portalId")), _text(event.get("subscriptionId")),
                                  _text(event.get("eventId")), ticket, prop, value, _text(event.get("occurredAt"))),
            state=("closed" if value in self.settings.closed_stages else "open") if prop == STAGE else None,
            vendor_status=value if prop == STAGE else None,
            assignee=value if prop == OWNER else None,
            priority=PRIORITIES.get(value.upper(), value.lower()) if prop == PRIORITY and value else None,
            occurred_at=parse_time(event.get("occurredAt")), received_at=request.received_at,
        ))

    def _echo(self, event: dict) -> str | None:
        """The hub's own change (its app set the ticket's first stage and priority): `sourceId`
        names who changed it, e.g. `userId:45678`; whole or its id part, it may be one the hub
        writes as (`hub_author_ids`, `app_id`)."""
        source = _text(event.get("sourceId"))
        if not source:
            return None
        own = {*self.settings.hub_author_ids, *([self.settings.app_id] if self.settings.app_id else [])}
        if source in own or source.rpartition(":")[2] in own:
            return f"ticket change by the hub's own app ({_text(event.get('changeSource')) or 'unknown source'} {source})"
        return None

    # --- notes -----------------------------------------------------------------------------------

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """A note engagement associated with the ticket, as the connector logs messages."""
        import html

        from chalicelib.adapters.connectors.hubspot import (
            NOTE_TO_TICKET,
            NOTES,
            _association,
            _fit_note,
            _object_id,
        )

        at = datetime.now(UTC)
        body = _fit_note("<br>".join(html.escape(line) for line in text.split("\n")))
        response = self.connector.api.call("POST", NOTES, json_body={
            "properties": {"hs_timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                           "hs_note_body": body},
            "associations": [_association(ticket, NOTE_TO_TICKET)],
        })
        return _object_id(response.data, vendor=self.connector.key)

    # --- setup -----------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        url = self.callback_url()
        subscriptions = [{"subscriptionType": "object.propertyChange", "objectName": "ticket", "propertyName": p,
                          "active": True} for p in FOLLOWED]
        stages = ", ".join(self.settings.closed_stages)
        return CallbackSetup(
            vendor="hubspot",
            can_create=bool(self.settings.app_id and self.settings.developer_api_key),
            steps=[
                SetupStep("Webhook target URL", {"Target URL": url}, text=(
                    "In the app's Webhooks tab (private app: Settings > Integrations > Private apps > the app > "
                    "Webhooks; legacy public app: the developer account > Apps > the app > Webhooks). HubSpot "
                    "signs this exact URL: it must equal callbacks.public_url.")),
                SetupStep("Subscriptions: ticket property changed", {
                    "Object": "Ticket", "Event": "Property changed (ticket.propertyChange)",
                    "Properties": ", ".join(FOLLOWED),
                }, text="One subscription per property; activate each of them."),
                SetupStep("Apps built with projects: webhooks.json", {
                    "settings.targetUrl": url,
                    "subscriptions.crmObjects": json.dumps(subscriptions, separators=(", ", ": ")),
                }),
                SetupStep("Signing secret", {"callbacks.secrets": "the app's client secret"}, text=(
                    "Legacy public app: Auth tab > Client secret. Private app: Auth tab > Client secret. "
                    "During a rotation list both secrets.")),
                SetupStep("Closed stages", {"callbacks.closed_stages": stages}, text=(
                    "Stage ids are per account and pipeline. GET /crm/v3/pipelines/tickets lists them; "
                    "the stages whose metadata.ticketState is CLOSED close the case, all others reopen it.")),
                SetupStep("The hub's own changes", {"callbacks.app_id": self.settings.app_id or "<app id>"}, text=(
                    "Events whose sourceId names this app (or an id in callbacks.hub_author_ids) are the hub's "
                    "own and are skipped.")),
            ],
            limits=[
                ("Agent replies are not relayed: HubSpot tickets have no reply thread (the hub writes the "
                 "customer's messages as notes, which are internal), and conversations messages are delivered "
                 "by HubSpot on the thread's own channel. Answer through the hub's API (POST /v1/messages)."),
                "Attachments: none (no replies).",
                "Status: pipeline stage (closed_stages close the case), owner and priority follow the ticket.",
            ],
        )

    def create_setup(self) -> list[str]:
        """The legacy public app's target URL and ticket subscriptions, through the webhooks API
        (`/webhooks/v3/{appId}`, developer API key); subscriptions it already has are kept."""
        from chalicelib.adapters.connectors.http import raise_for_status

        app, key = self.settings.app_id, self.settings.developer_api_key
        if not app or key is None:
            raise ConfigError("hubspot: --create needs callbacks.app_id and callbacks.developer_api_key (a legacy "
                              "public app); private apps are configured in HubSpot, follow the printed steps")
        base = f"{str(self.connector.settings.base_url).rstrip('/')}/webhooks/v3/{quote(app, safe='')}"
        auth = "?hapikey=" + quote(self.connector.secrets.get(key), safe="")
        http, timeout = self.connector.runtime.http, self.connector.settings.timeout_seconds

        def call(method: str, path: str, body: dict | None = None) -> Any:
            response = http.request(method, base + path + auth, body=json.dumps(body).encode() if body else None,
                                    headers={"accept": "application/json", "content-type": "application/json"},
                                    timeout=timeout)
            raise_for_status(response, vendor=self.connector.key)
            return json.loads(response.body) if response.body.strip() else None

        done = []
        url = str(self.settings.public_url)
        call("PUT", "/settings", {"targetUrl": url, "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"}})
        done.append(f"target URL {url}")
        listed = call("GET", "/subscriptions") or {}
        have = {(s.get("eventType"), s.get("propertyName")) for s in listed.get("results") or [] if isinstance(s, dict)}
        for prop in FOLLOWED:
            if ("ticket.propertyChange", prop) in have:
                done.append(f"ticket.propertyChange {prop}: already subscribed")
                continue
            created = call("POST", "/subscriptions", {"eventType": "ticket.propertyChange", "propertyName": prop,
                                                      "active": True}) or {}
            done.append(f"ticket.propertyChange {prop}: subscription {created.get('id', '?')}")
        return done


def signed_uris(public_url: str, query: Any) -> list[str]:
    """The URI HubSpot signed, as HubSpot puts it before signing (the listed characters decoded):
    the configured URL with the request's query string. API Gateway hands over the query already
    decoded, so its encoding is rebuilt, in the order received, both ways HubSpot may have written
    a space (`%20`, `+`)."""
    parts = urlsplit(public_url)
    items = list(query.items()) if query else []
    if not items:
        return [_signed_form(public_url)]
    uris = []
    for encode in (lambda v: quote(v, safe=""), lambda v: quote_plus(v, safe="")):
        rebuilt = "&".join(f"{encode(str(k))}={encode(str(v))}" for k, v in items)
        uris.append(_signed_form(urlunsplit((parts.scheme, parts.netloc, parts.path, rebuilt, ""))))
    return list(dict.fromkeys(uris))


def _signed_form(uri: str) -> str:
    return _SIGNED_DECODED.sub(lambda m: bytes.fromhex(m.group(1)).decode(), uri)


def _text(value: Any) -> str | None:
    """An id or value from an event (HubSpot sends ids as numbers, values as strings)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    return str(value).strip()
