"""The hub's own web chat widget API (protocol: docs/channels/webchat.md); identity verification as in https://www.chatwoot.com/docs/product/channels/live-chat/sdk/identity-validation"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.domain.models import Attachment, Channel, ContentType, Handle, InboundMessage, Sender
from chalicelib.errors import ForbiddenError, HubError, MalformedPayloadError, NotFoundError, SignatureError
from chalicelib.secrets import Secret
from chalicelib.signing.compare import signed_by_any

logger = logging.getLogger(__name__)

#: Ids end up in identifier keys (`webchat:<site>/<visitor>`) and dedupe keys, so no `/`,
#: no spaces, nothing a widget would not generate (UUIDs, ULIDs, slugs).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_TEXT = 10_000
MAX_ATTACHMENTS = 10

#: Identity claims in the order that picks the one `user_hash` signs; the first present wins.
SIGNED_CLAIMS: tuple[tuple[str, str], ...] = (("external_id", "external"), ("email", "email"), ("phone", "phone"))

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#\s:]+|\[[^\]/]+\])(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"https": "443", "http": "80"}


def user_hash(secret: str, value: str) -> str:
    """What a site's backend puts in `user_hash`: hex HMAC-SHA256 of the signed claim, keyed
    with the site's identity secret. The browser never sees the secret."""
    return hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_claim(identity: Any) -> tuple[str, str] | None:
    """The (field, value) `user_hash` covers: external_id, else email, else phone; blanks count as absent."""
    if not isinstance(identity, Mapping):
        return None
    for field, _kind in SIGNED_CLAIMS:
        value = identity.get(field)
        if isinstance(value, str) and value.strip():
            return field, value
    return None


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` as browsers send it: lower-case, no default port, no trailing slash."""
    match = _ORIGIN.fullmatch(value.strip().rstrip("/").lower())
    if match is None:
        return None
    port = match["port"]
    if port is None or port == _DEFAULT_PORTS[match["scheme"]]:
        return f"{match['scheme']}://{match['host']}"
    return f"{match['scheme']}://{match['host']}:{port}"


class WebchatSite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    #: Keys the site's backend signs `user_hash` with; list the new one beside the old while rotating.
    #: Empty: the site has no identity verification and every claim stays unverified.
    identity_secrets: list[Secret] = Field(default_factory=list)
    #: Pages allowed to embed the widget; empty allows any. Enforced only when a browser sends `Origin`.
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        normalized = []
        for value in values:
            origin = normalize_origin(value)
            if origin is None:
                raise ValueError(f"{value!r} is not an origin like https://shop.example.com (no path)")
            normalized.append(origin)
        return normalized


class WebchatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[WebchatSite] = Field(min_length=1)

    @field_validator("sites")
    @classmethod
    def _unique(cls, sites: list[WebchatSite]) -> list[WebchatSite]:
        ids = [site.id for site in sites]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate site id {', '.join(duplicates)}")
        return sites


# --- the request body the widget sends ---------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT)


class WebchatAttachment(_Strict):
    url: str = Field(max_length=2048)
    content_type: str | None = Field(default=None, max_length=255)
    filename: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        # Visitor-supplied: the worker must treat it as untrusted (no fetching of internal hosts).
        if not re.match(r"https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError("must be an http(s) URL")
        return value


class WebchatIdentity(_Strict):
    external_id: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=256)

    @field_validator("*", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        # Widgets send "" for "not known"; it is the same as leaving the claim out.
        return None if isinstance(value, str) and not value.strip() else value


class WebchatMessage(_Strict):
    site_id: str = Field(pattern=ID_PATTERN)
    visitor_id: str = Field(pattern=ID_PATTERN)
    #: Generated by the widget once per message and reused on retry: the dedupe key.
    message_id: str = Field(pattern=ID_PATTERN)
    #: The widget's chat session: every message of a session lands in the same case, however
    #: long the pauses between them.
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    #: The visitor's clock: informational only, never used for ordering.
    sent_at: datetime | None = None
    attachments: list[WebchatAttachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    identity: WebchatIdentity | None = None
    user_hash: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @model_validator(mode="after")
    def _has_content(self) -> WebchatMessage:
        if not (self.text and self.text.strip()) and not self.attachments:
            raise ValueError("a message needs text or at least one attachment")
        return self


class WebchatAdapter(ChannelAdapter[WebchatSettings]):
    """Messages from the hub's chat widget, one configured site per embedding website."""

    key: ClassVar[str] = "webchat"
    docs_url: ClassVar[str] = "https://www.chatwoot.com/docs/product/channels/live-chat/sdk/identity-validation"
    Settings: ClassVar[type[BaseModel]] = WebchatSettings
    sender = "chalicelib.adapters.channels.webchat.sender:WebchatSender"
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)

    @cached_property
    def _sites(self) -> dict[str, WebchatSite]:
        return {site.id: site for site in self.settings.sites}

    def cors_headers(self, request: WebhookRequest) -> dict[str, str]:
        # The widget runs on the customer's pages: allow the origins the sites list; a site with no
        # list accepts any origin (verify() applies the per-site check once the body names the site).
        origin = normalize_origin(request.header("origin") or "")
        if origin is None:
            return {}
        if any(not site.allowed_origins or origin in site.allowed_origins for site in self.settings.sites):
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            }
        return {}

    def _identity_secrets(self, site_id: str) -> list[str]:
        # Resolved on every use: the resolver caches, and a rotated secret takes effect at once.
        site = self._sites.get(site_id)
        return self.secrets.get_all(site.identity_secrets) if site is not None else []

    def verify(self, request: WebhookRequest) -> None:
        """Check the site, the embedding page and the identity proof.

        A browser cannot keep a secret, so there is no request signature: what is proved is the
        *identity claim*, by the site's backend. A body that is not a JSON object carries nothing
        to check; `parse` refuses it with a 400 that says why.
        """
        data = _peek(request.body)
        if data is None:
            return
        site_id = data.get("site_id")
        site = self._sites.get(site_id) if isinstance(site_id, str) else None
        if site is None:
            raise SignatureError("unknown or missing site_id")
        origin = request.header("origin")
        if site.allowed_origins and origin is not None and normalize_origin(origin) not in site.allowed_origins:
            raise ForbiddenError("this page's Origin is not in the site's allowed_origins")
        given = data.get("user_hash")
        if given is None:
            return
        if not isinstance(given, str) or not _HEX64.fullmatch(given):
            raise SignatureError("user_hash must be 64 hex digits")
        claim = signed_claim(data.get("identity"))
        if claim is None:
            raise SignatureError("user_hash given, but identity has no external_id, email or phone it could sign")
        if not site.identity_secrets:
            raise SignatureError("user_hash given, but the site has no identity_secrets configured")
        if not self._hash_matches(site.id, claim[1], given):
            raise SignatureError("user_hash does not match the signed identity claim for any identity_secrets")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        try:
            payload = WebchatMessage.model_validate_json(request.body)
        except ValidationError as exc:
            raise MalformedPayloadError(_describe(exc)) from None
        if payload.site_id not in self._sites:
            raise MalformedPayloadError("unknown site_id")
        identity = payload.identity.model_dump() if payload.identity else {}
        claim = signed_claim(identity)
        # Re-checked here, not trusted from verify(): parse alone must never mark a claim verified.
        verified_field = (
            claim[0]
            if claim and payload.user_hash and self._hash_matches(payload.site_id, claim[1], payload.user_hash)
            else None
        )
        handles = [Handle(kind="webchat", scope=payload.site_id, value=payload.visitor_id, verified=True)]
        for field, kind in SIGNED_CLAIMS:
            if value := identity.get(field):
                handles.append(Handle(kind=kind, value=value, verified=field == verified_field))
        handles[1:] = sorted(handles[1:], key=lambda h: not h.verified)

        metadata: dict[str, Any] = {"client_message_id": payload.message_id, "identity_verified": bool(verified_field)}
        if origin := request.header("origin"):
            metadata["origin"] = origin[:256]
        sent_at = payload.sent_at
        if sent_at is not None and sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=timezone.utc)
        text = payload.text if payload.text and payload.text.strip() else None
        message = InboundMessage(
            provider=self.key,
            channel=Channel.WEBCHAT,
            # Scoped to site and visitor: a widget that numbers messages 1, 2, 3 must not make one
            # visitor's message a duplicate of another's.
            provider_message_id=f"{payload.site_id}/{payload.visitor_id}/{payload.message_id}",
            account=payload.site_id,
            sender=Sender(handles=handles, display_name=identity.get("name")),
            sent_at=sent_at,
            received_at=request.received_at,
            content_type=ContentType.MEDIA if payload.attachments else ContentType.TEXT,
            text=text,
            attachments=[Attachment(**a.model_dump()) for a in payload.attachments],
            metadata=metadata,
            conversation_key=f"webchat:{payload.site_id}:{payload.visitor_id}",
            # Scoped to the visitor: a session id guessed by another visitor leads nowhere.
            thread_keys=(
                [f"webchat:{payload.site_id}:{payload.visitor_id}:{payload.session_id}"] if payload.session_id else []
            ),
            # user_hash is a bearer proof of identity: it is not stored with the message.
            raw=payload.model_dump(mode="json", exclude={"user_hash"}, exclude_unset=True),
        )
        return ParsedWebhook(events=[message])

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        body: dict[str, Any] = {"status": "accepted"}
        first = next((e for e in parsed.events if isinstance(e, InboundMessage)), None)
        if first is not None:
            body["message_id"] = first.metadata.get("client_message_id")
            tokens = self.services.visitor_tokens
            if tokens is not None:
                visitor = first.sender.handles[0]
                # What the widget polls its replies with (GET /webhooks/webchat/messages). The
                # message is queued already: a hub that cannot sign tokens still accepts it.
                try:
                    body["visitor_token"] = tokens.issue(first.account, visitor.value)
                except HubError as exc:
                    logger.warning("web chat message accepted without a visitor token: %s", exc.message)
        return WebhookResponse(status=202, body=json.dumps(body), content_type="application/json")

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """`GET /webhooks/webchat/messages?site_id=&visitor_id=&after=`: the visitor's replies after
        the cursor, oldest first, for the widget holding the visitor's token. One key lookup."""
        if request.hook != "messages":
            return super().handshake(request)
        tokens, outbox = self.services.visitor_tokens, self.services.visitor_outbox
        if tokens is None or outbox is None:
            raise NotFoundError("this hub does not serve web chat replies")
        site_id, visitor_id = request.query.get("site_id"), request.query.get("visitor_id")
        for name, value in (("site_id", site_id), ("visitor_id", visitor_id)):
            if not value or not re.fullmatch(ID_PATTERN, value):
                raise MalformedPayloadError(f"query parameter {name} is missing or not a valid id")
        after = request.query.get("after")
        if after is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,64}", after):
            raise MalformedPayloadError("query parameter after must be a message id from an earlier answer")
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if site_id not in self._sites:
            raise SignatureError("unknown site_id")
        if scheme.lower() != "bearer" or not tokens.valid(site_id, visitor_id, token.strip()):
            raise SignatureError("send Authorization: Bearer <visitor_token from the message's answer>")
        messages = [entry.model_dump(mode="json") for entry in outbox.after(site_id, visitor_id, after)]
        cursor = messages[-1]["id"] if messages else after
        return WebhookResponse(status=200, body=json.dumps({"data": messages, "cursor": cursor}),
                               content_type="application/json")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        """A chat message on the first site from a new visitor who gives `customer`'s phone and
        name; the phone is proved with `user_hash` when the site has an identity secret."""
        import uuid

        site = self.settings.sites[0]
        payload: dict[str, Any] = {
            "site_id": site.id,
            "visitor_id": "visitor-" + uuid.uuid4().hex[:12],
            "message_id": str(uuid.uuid4()),
            "text": customer.text,
            "identity": {"phone": customer.phone, "name": customer.name},
        }
        if site.identity_secrets:
            # What the site's backend computes with the site's identity secret (docs/channels/webchat.md).
            payload["user_hash"] = user_hash(self.secrets.get(site.identity_secrets[0]), customer.phone)
        return SimulatedRequest(
            path=f"/webhooks/{self.key}",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _hash_matches(self, site_id: str, value: str, given: str) -> bool:
        expected_given = given.lower().encode("ascii")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \u escape: no backend could have signed it
            return False
        matched = signed_by_any(lambda secret: user_hash(secret, value), self._identity_secrets(site_id), expected_given)
        return matched


def _peek(body: bytes) -> dict | None:
    """The body as a dict if it is one; verify() only needs site, origin and identity fields."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _describe(exc: ValidationError) -> str:
    """Field paths and reasons, never the values: a 400 body must not echo personal data."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False)[:5]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{location}: {error['msg']}")
    return "; ".join(problems)
