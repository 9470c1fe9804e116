"""The hub's error hierarchy.

Errors are typed by *retry semantics*, not by where they happen, so that the edges (HTTP routes,
queue workers) can translate them in one place: a bad request gets a 4xx so the provider stops,
a transient fault gets a 5xx or a queue retry, a permanent vendor rejection is recorded and not
retried. Messages never contain secrets or personal data.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    #: HTTP status the API edge answers with when this error escapes a route.
    http_status: int = 500
    #: Stable machine-readable code for the JSON error shape.
    code: str = "internal_error"

    def __init__(self, message: str, *, detail: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


# --- configuration -----------------------------------------------------------------------------


class ConfigError(HubError):
    """The hub configuration is invalid; raised at start-up and names the offending key."""

    code = "config_error"


class SecretResolutionError(ConfigError):
    """A secret reference (`env:`, `ssm:`, `secretsmanager:`) could not be resolved. A 503 at
    the edge: the request was fine, the hub could not check it now, so the provider retries."""

    http_status = 503
    code = "secret_unresolved"


# --- inbound request problems (4xx) ------------------------------------------------------------


class RequestRejectedError(HubError):
    """The caller sent something we refuse; the provider should not retry it unchanged."""

    http_status = 400
    code = "bad_request"


class MalformedPayloadError(RequestRejectedError):
    """The body cannot be parsed into the provider's documented shape."""

    code = "malformed_payload"


class SignatureError(RequestRejectedError):
    """The request is not provably from the provider (missing/wrong signature or token)."""

    http_status = 401
    code = "invalid_signature"


class ForbiddenError(RequestRejectedError):
    """A handshake or credential was presented and is wrong (e.g. Meta's verify token)."""

    http_status = 403
    code = "forbidden"


class PayloadTooLargeError(RequestRejectedError):
    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(RequestRejectedError):
    http_status = 415
    code = "unsupported_media_type"


class NotFoundError(RequestRejectedError):
    http_status = 404
    code = "not_found"


class MethodNotAllowedError(RequestRejectedError):
    http_status = 405
    code = "method_not_allowed"


class UnauthorizedError(RequestRejectedError):
    """Consumer API: missing or invalid API key."""

    http_status = 401
    code = "unauthorized"


class InsufficientScopeError(ForbiddenError):
    """Consumer API: a valid API key without the scope the route requires."""

    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the scope {scope}", detail={"required_scope": scope})
        self.scope = scope


class InvalidIdentifierError(RequestRejectedError):
    """An identifier (phone, email, channel id) cannot be normalized."""

    code = "invalid_identifier"


# --- infrastructure (retry) --------------------------------------------------------------------


class TransientError(HubError):
    """A dependency is temporarily unavailable; the caller should retry later."""

    http_status = 503
    code = "temporarily_unavailable"


class QueueUnavailableError(TransientError):
    """The durable queue did not accept the message; the webhook must not be acknowledged."""

    code = "queue_unavailable"


class QueueBodyLostError(HubError):
    """A received message's claim-checked body is gone although the message was never handled
    (handled ones leave a marker): it expired or was deleted. Retrying cannot bring it back; the
    message is left to its queue's DLQ, where the pointer is kept for the operator."""

    code = "queue_body_lost"


class StoreUnavailableError(TransientError):
    code = "store_unavailable"


class StoreRejectedError(HubError):
    """The store refused the request itself (DynamoDB's `ValidationException`, SQLite's data
    errors): sent again unchanged it fails again, so it is not a `TransientError`. A route
    answers 422; a queue worker gives the message up to its dead-letter queue after the queue's
    receive limit instead of retrying it for as long as the queue keeps it."""

    http_status = 422
    code = "store_rejected"


class ItemTooLargeError(StoreRejectedError):
    """A record exceeds the store's item size limit (DynamoDB: 400 KB, enforced alike on SQLite)."""

    http_status = 413
    code = "item_too_large"


class ConcurrentUpdateError(TransientError):
    """Another worker changed the same message or record first; retry (the retry reads its outcome)."""

    code = "concurrent_update"


class ConflictError(HubError):
    """A conditional write lost against an existing record (used inside services, not at edges)."""

    http_status = 409
    code = "conflict"


# --- delivery to destinations ------------------------------------------------------------------


class DeliveryError(HubError):
    """A destination did not accept a delivery."""

    code = "delivery_failed"


class RetryableDeliveryError(DeliveryError):
    """Timeouts, 5xx, 429: try again, after `retry_after` seconds when the vendor said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, detail: dict | None = None):
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Any other 4xx: the vendor rejected the request; retrying it unchanged cannot succeed."""

    def __init__(self, message: str, *, provider_code: str | None = None, detail: dict | None = None):
        super().__init__(message, detail=detail)
        #: The vendor's own error code (Twilio `21610`, WhatsApp `131047`), when it gave one.
        self.provider_code = provider_code


class RecipientOptedOutError(PermanentDeliveryError):
    """A channel provider refused a send because the recipient unsubscribed (Twilio 21610): the
    hub records the opt-out in the customer's consent ledger, so it never tries again.

    `purposes` is what the refusal covers: every message (the default), or marketing only
    (WhatsApp 131050), which leaves the customer's service messages allowed."""

    code = "recipient_opted_out"

    def __init__(self, message: str, *, provider_code: str | None = None, detail: dict | None = None,
                 purposes: tuple[str, ...] = ("service", "marketing")):
        super().__init__(message, provider_code=provider_code, detail=detail)
        self.purposes = purposes


class OutsideServiceWindowError(PermanentDeliveryError):
    """A channel provider refused free text because its customer service window had closed
    (WhatsApp 131047, Twilio 63016, Messenger 10/2018278): only a template may be sent now."""

    code = "outside_service_window"


class RetryLaterError(TransientError):
    """Put the message back on its queue and try again after `delay_seconds`."""

    code = "retry_later"

    def __init__(self, message: str, *, delay_seconds: int, detail: dict | None = None) -> None:
        super().__init__(message, detail=detail)
        self.delay_seconds = delay_seconds


class BatchIncompleteError(TransientError):
    """Raised by an SQS handler after it deleted the messages it finished, so that only the
    unfinished ones return to the queue (Chalice cannot report partial batch failures)."""

    code = "batch_incomplete"


class RuleRefusedError(RequestRejectedError):
    """The request is well-formed, but a configured rule forbids it (a blocked identifier...)."""

    http_status = 422
    code = "rule_refused"


class SendRefusedError(RequestRejectedError):
    """A message the hub can tell it must not send, refused before anything is queued:
    `consent_refused` (409), `outside_service_window`, `no_reachable_channel`,
    `template_required` (422). Automatic sends record the same code on the contact instead."""

    def __init__(self, code: str, message: str, *, status: int = 422, detail: dict | None = None) -> None:
        super().__init__(message, detail=detail)
        self.code = code
        self.http_status = status


class UnsendableMessageError(RequestRejectedError):
    """The message breaks a limit of its channel or provider (text length, attachments, an
    unknown template): `detail.fields` names each field and what is wrong with it."""

    http_status = 422
    code = "invalid_message"


class InvalidEventError(RequestRejectedError):
    """A business event breaks the event contract (`POST /v1/events`, `hubctl event`, EventBridge):
    `detail.fields` names each field (`events[3].occurred_at`) and what is wrong with it. One
    invalid event refuses the whole batch, so a producer never has to work out which were queued."""

    code = "invalid_event"
