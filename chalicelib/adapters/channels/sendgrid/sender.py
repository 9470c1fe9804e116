"""SendGrid v3 Mail Send (`POST /v3/mail/send`): https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send

SendGrid builds the MIME itself from JSON, so the shared message (`email/compose.py`) gives the
subject and headers and the parts are sent as `content` and base64 `attachments`. Threading goes
in `headers` (In-Reply-To, References; the spec forbids overriding only To/From/Subject/Reply-To/
CC/BCC, Content-Type and a few of SendGrid's own). Whether SendGrid keeps a `Message-ID` given
there is not documented: the hub's id is set there and also listed in References, so the
customer's answer threads by either. Statuses are matched by the custom arg `hub_outbound_id`
(`events.py`), which is also the `provider_message_id`; SendGrid's `X-Message-Id` is kept in
the outcome's metadata.
"""

from __future__ import annotations

import base64
import json
from typing import ClassVar

from chalicelib.adapters.channels.email.compose import EmailSender, message_id_of
from chalicelib.adapters.channels.sendgrid.settings import SendgridSettings
from chalicelib.adapters.channels.sending import CredentialRefusedError, first_accepted, resolved_secrets
from chalicelib.adapters.channels.sendgrid.events import HUB_ARG
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.outbound import OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: Headers of the shared message SendGrid takes in `headers` (the rest it sets itself, from fields).
THREAD_HEADERS = ("Message-ID", "In-Reply-To", "References", "Auto-Submitted")


class SendgridSender(EmailSender[SendgridSettings]):
    """Email through SendGrid from a verified sender or authenticated domain."""

    key: ClassVar[str] = "sendgrid"
    docs_url: ClassVar[str] = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send"
    #: "The total size of your email, including attachments, must be less than 30MB."
    max_message_bytes: ClassVar[int] = 30 * 1024 * 1024

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One accepted POST (202). SendGrid takes no idempotency key; a repeated send carries the
        same Message-ID header. A key SendGrid refuses (401: nothing sent) is followed by the next
        of `api_keys`.

        Raises `RetryableDeliveryError` (429 with its reset header, 5xx, network) or
        `PermanentDeliveryError` (400 with SendGrid's first error, 403 sender not verified, 413).
        """
        ours = message_id_of(message, message.account)
        files = self.files(message)
        email = self.compose(message.model_copy(update={"message_id": ours}), files, extra_references=(ours,))
        body = json.dumps(self.payload(message, email.message, files)).encode()
        url = f"{self.settings.api_base_url}/v3/mail/send"

        def post(key: str) -> HttpResponse:
            response = self.runtime.http.request("POST", url, body=body, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json",
            })
            _raise_for(response)
            return response

        response = first_accepted(resolved_secrets(self.secrets, self.settings.api_keys, what="SendGrid API key"), post,
                                  none_configured="sendgrid: no api_keys configured")
        metadata = {"message_id": ours}
        if x_message_id := response.headers.get("x-message-id"):
            metadata["x_message_id"] = x_message_id[:200]
        return SendOutcome(provider_message_id=message.id, metadata=metadata)

    def payload(self, message: OutboundMessage, email, files) -> dict:
        """The Mail Send body for the composed `email`: its subject and threading headers, the
        text (always) and HTML parts, the files as base64, and the hub's id as a custom arg."""
        sender: dict = {"email": message.account}
        if self.settings.from_name:
            sender["name"] = self.settings.from_name
        content = [{"type": "text/plain", "value": email.get_body(("plain",)).get_content()}]
        if message.html:
            content.append({"type": "text/html", "value": message.html})
        body: dict = {
            # custom_args in the personalization: the spec types the top-level one as a string.
            "personalizations": [{"to": [{"email": message.to}], "custom_args": {HUB_ARG: message.id}}],
            "from": sender,
            "subject": str(email["Subject"]),
            "content": content,
            "headers": {name: str(email[name]) for name in THREAD_HEADERS if email[name] is not None},
        }
        if files:
            body["attachments"] = [
                {"content": base64.b64encode(f.data).decode("ascii"), "type": f.content_type, "filename": f.filename,
                 "disposition": "attachment"}
                for f in files
            ]
        return body


def _raise_for(response: HttpResponse) -> None:
    if response.ok:
        return
    reason = _first_error(response)
    if response.status == 401:
        # A key SendGrid refuses sent nothing: the next of the rotation list is safe to try.
        raise CredentialRefusedError(f"sendgrid answered 401: {reason}", provider_code="401")
    if response.status in RETRYABLE_STATUSES or response.status >= 500:
        raise RetryableDeliveryError(f"sendgrid answered {response.status}: {reason}",
                                     retry_after=retry_after_seconds(response.headers))
    raise PermanentDeliveryError(f"sendgrid answered {response.status}: {reason}", provider_code=str(response.status))


def _first_error(response: HttpResponse) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}`, first entry, else the body's start."""
    try:
        data = json.loads(response.body)
        error = data["errors"][0]
        return f"{error.get('field') or ''}: {error.get('message')}".strip(": ")[:300]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return response.text(300)
