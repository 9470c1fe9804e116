"""Amazon SES v2 `SendEmail` with raw MIME: https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html

Raw content, because only the raw message carries our In-Reply-To and References as built
(`email/compose.py`). SES replaces the Message-ID we set ("If you provide a Message-ID header,
Amazon SES overrides the header with its own value",
https://docs.aws.amazon.com/ses/latest/dg/header-fields.html): the outcome names the one the
customer sees (`<ses-id@region.amazonses.com>`), and References also lists ours, so the
customer's answer threads into the case by either.
"""

from __future__ import annotations

import re
from typing import ClassVar

from chalicelib.adapters.channels.email.compose import EmailSender, message_id_of
from chalicelib.adapters.channels.email.outbound import thread_key
from chalicelib.adapters.channels.ses.settings import SesSettings
from chalicelib.adapters.connectors.http import retry_after_seconds
from chalicelib.domain.outbound import OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: Throttling and quota: retried (the send worker backs off, the breaker opens on a storm).
RETRYABLE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "Throttling",
                             "ThrottlingException", "ServiceUnavailable", "InternalFailure"})
#: Sending is paused for the account or the configuration set: an operator resumes it, and the
#: messages wait (a long delay) instead of failing meanwhile.
PAUSED_CODES = frozenset({"SendingPausedException"})
PAUSED_RETRY_SECONDS = 900.0
#: The tag that names the hub's message in SES events and the console's message search.
TAG_NAME = "hub_message_id"


class SesSender(EmailSender[SesSettings]):
    """Email through SES from a verified identity (domain or address) of `sending_addresses`."""

    key: ClassVar[str] = "ses"
    docs_url: ClassVar[str] = "https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html"
    #: SES v2: "The maximum message size, including attachments, is 40 MB."
    max_message_bytes: ClassVar[int] = 40 * 1024 * 1024

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One `SendEmail` call. SES takes no idempotency key: a crash between its answer and the
        hub's record sends the mail again (with the same Message-ID in References, so the
        customer's client shows one thread).

        Raises `RetryableDeliveryError` (throttling, quota, 5xx, a network failure, sending
        paused) or `PermanentDeliveryError` with the SES error code (MessageRejected,
        MailFromDomainNotVerifiedException, AccountSuspendedException, NotFoundException...).
        """
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        client = self.runtime.aws_client("sesv2")
        ours = message_id_of(message, message.account)
        email = self.compose(message.model_copy(update={"message_id": ours}), self.files(message),
                             extra_references=(ours,))
        params: dict = {
            "FromEmailAddress": message.account,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Raw": {"Data": email.as_bytes()}},
            "EmailTags": [{"Name": TAG_NAME, "Value": _tag_value(message.id)}],
        }
        if self.settings.configuration_set_name:
            params["ConfigurationSetName"] = self.settings.configuration_set_name
        try:
            answer = client.send_email(**params)
        except ClientError as exc:
            raise _classified(exc) from None
        except ParamValidationError as exc:
            raise PermanentDeliveryError(f"SES refused the request's shape: {exc}", provider_code="ParamValidation") from None
        except BotoCoreError as exc:
            # Connection, read timeouts, endpoint resolution: nothing was accepted, or SES will not say.
            raise RetryableDeliveryError(f"SES could not be reached: {type(exc).__name__}") from None
        ses_id = answer["MessageId"]
        wire = f"<{ses_id}@{self._message_id_domain(client)}>"
        # The customer's client answers SES's id (In-Reply-To); ours is a thread key since queueing.
        return SendOutcome(provider_message_id=ses_id,
                           metadata={"message_id": wire, "hub_message_id": ours, "ses_message_id": ses_id},
                           thread_keys=[thread_key(wire)])

    def _message_id_domain(self, client) -> str:
        if self.settings.message_id_domain:
            return self.settings.message_id_domain
        region = getattr(getattr(client, "meta", None), "region_name", None) or "us-east-1"
        return "email.amazonses.com" if region == "us-east-1" else f"{region}.amazonses.com"


def _classified(exc) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    reason = f"SES answered {code}: {str(error.get('Message') or '')[:300]}".strip()
    response = exc.response.get("ResponseMetadata", {})
    status = response.get("HTTPStatusCode") or 0
    if code in PAUSED_CODES:
        return RetryableDeliveryError(reason, retry_after=PAUSED_RETRY_SECONDS)
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        # SES documents no Retry-After; one sent anyway (by a proxy or a regional endpoint) is honoured.
        return RetryableDeliveryError(reason, retry_after=retry_after_seconds(response.get("HTTPHeaders") or {}))
    return PermanentDeliveryError(reason, provider_code=code)


def _tag_value(value: str) -> str:
    """SES tag values take ASCII letters, digits, `_` and `-` only, up to 256 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256] or "_"
