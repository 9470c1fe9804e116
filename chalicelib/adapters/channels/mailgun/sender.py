"""Mailgun `POST /v3/{domain}/messages.mime`: https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime

The MIME route, not `/messages` with fields: Mailgun sends the message we built as it is, so the
customer's reply names our Message-ID (which Mailgun keeps and returns as `id`) and our
In-Reply-To/References, and every email provider's message is built by the same code.
"""

from __future__ import annotations

import base64
import re
from typing import ClassVar
from urllib.parse import quote

from chalicelib.adapters.channels.email.compose import EmailSender
from chalicelib.adapters.channels.mailgun.settings import MailgunSettings
from chalicelib.adapters.channels.sending import CredentialRefusedError, first_accepted, json_object, resolved_secrets
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.outbound import OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: Mailgun's "try again after 120 seconds" in a 429 body, when no Retry-After header came.
_AFTER = re.compile(r"try again after (\d{1,5}) seconds")


class MailgunSender(EmailSender[MailgunSettings]):
    """Email through a Mailgun sending domain, US or EU (`api_base_url`)."""

    key: ClassVar[str] = "mailgun"
    docs_url: ClassVar[str] = (
        "https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime"
    )
    #: "The maximum message size Mailgun supports is 25MB."
    max_message_bytes: ClassVar[int] = 25 * 1024 * 1024

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One accepted POST. Mailgun takes no idempotency key; a repeated send carries the same
        Message-ID, which mail clients show once. A key Mailgun refuses (401: nothing sent) is
        followed by the next of `api_keys`.

        Raises `RetryableDeliveryError` (429 with Mailgun's delay, 5xx, network) or
        `PermanentDeliveryError` (400 with Mailgun's message, 401/403/404: wrong key or domain).
        """
        from urllib3 import encode_multipart_formdata

        email = self.compose(message, self.files(message))
        body, content_type = encode_multipart_formdata([
            ("to", message.to),
            ("message", ("message.mime", email.as_bytes(), "message/rfc822")),
        ])
        domain = self.settings.domain or message.account.rsplit("@", 1)[1]
        url = f"{self.settings.api_base_url}/v3/{quote(domain, safe='')}/messages.mime"

        def post(key: str) -> str | None:
            credential = base64.b64encode(f"api:{key}".encode()).decode("ascii")
            return _accepted_id(self.runtime.http.request("POST", url, body=body, headers={
                "Authorization": f"Basic {credential}", "Content-Type": content_type, "Accept": "application/json",
            }))

        sent_id = first_accepted(resolved_secrets(self.secrets, self.settings.api_keys, what="Mailgun API key"), post,
                                 none_configured="mailgun: no api_keys configured")
        provider_id = sent_id or email.message_id.strip("<>")
        return SendOutcome(provider_message_id=provider_id,
                           metadata={"message_id": f"<{provider_id}>", "mailgun_domain": domain})


def _accepted_id(response: HttpResponse) -> str | None:
    """Mailgun's `id` of an accepted message (its Message-ID without the brackets); None when the
    2xx names none (the message is sent: never an error, which would send it again)."""
    reason = _reason(response)
    if response.status == 429 or response.status in RETRYABLE_STATUSES or response.status >= 500:
        after = retry_after_seconds(response.headers)
        if after is None and (match := _AFTER.search(reason)):
            after = float(match.group(1))
        raise RetryableDeliveryError(f"mailgun answered {response.status}: {reason}", retry_after=after)
    if response.status == 401:
        # A key Mailgun refuses sent nothing: the next of the rotation list is safe to try.
        raise CredentialRefusedError(f"mailgun answered 401: {reason}", provider_code="401")
    if not response.ok:
        raise PermanentDeliveryError(f"mailgun answered {response.status}: {reason}", provider_code=str(response.status))
    sent_id = json_object(response.body).get("id")
    if not isinstance(sent_id, str) or not sent_id.strip("<> "):
        return None
    return sent_id.strip().strip("<>")


def _reason(response: HttpResponse) -> str:
    message = json_object(response.body).get("message")
    return str(message)[:300] if message else response.text()
