"""Twilio Messages API sender (SMS, MMS, WhatsApp): https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlencode

from chalicelib.adapters.channels.sending import (
    ChannelSender,
    CredentialRefusedError,
    Problem,
    first_accepted,
    is_http_url,
    json_object,
)
from chalicelib.adapters.channels.twilio.settings import TwilioSettings, hook_url
from chalicelib.adapters.channels.twilio.outbound_settings import E164
from chalicelib.adapters.channels.twilio.segments import segments, utf16_length
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundMessage, SendOutcome, TemplateMessage
from chalicelib.errors import (
    OutsideServiceWindowError,
    PermanentDeliveryError,
    RecipientOptedOutError,
    RetryableDeliveryError,
    SecretResolutionError,
)

if TYPE_CHECKING:
    from chalicelib.domain.identifiers import Identifier

logger = logging.getLogger(__name__)

KEY = "twilio"
CHANNELS = frozenset({Channel.SMS, Channel.MMS, Channel.WHATSAPP})
WHATSAPP_PREFIX = "whatsapp:"
#: `Body` (and each `ContentVariables` value) "can be up to 1,600 characters", on every channel:
#: WhatsApp's own 4,096 does not apply through Twilio (errors 21617, 21658).
MAX_BODY = 1600
#: "You can include up to ten media_url parameters per message" (Messages API, `MediaUrl`).
MAX_MEDIA = 10
#: "Unlike MMS, a WhatsApp media message can only contain one media attachment. Any additional
#: attachments will be ignored." https://support.twilio.com/hc/en-us/articles/360017961894
MAX_WHATSAPP_MEDIA = 1
#: Twilio documents this header on the webhooks it sends (to tell retries apart) and gives no
#: de-duplication promise for API requests; sent anyway, as the message id, so a request and its
#: retry carry the same token wherever Twilio does honour it.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
#: "Attempt to send to unsubscribed recipient": the customer replied STOP.
OPTED_OUT = "21610"
#: "Outside messaging window. For WhatsApp, use a Message Template instead."
OUTSIDE_WINDOW = "63016"
_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 ().-]{5,}[0-9]")


class TwilioSender(ChannelSender[TwilioSettings]):
    """One `POST …/Messages.json` per message: `From` the account's number (or the Messaging
    Service), `StatusCallback` the hub's `/webhooks/twilio/status`, text and media, or a Content
    template on WhatsApp."""

    key: ClassVar[str] = KEY
    channels: ClassVar[frozenset[Channel]] = CHANNELS
    docs_url: ClassVar[str] = "https://www.twilio.com/docs/messaging/api/message-resource"

    # --- pure ---------------------------------------------------------------------------------

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        """The customer's number as Twilio sent it in `From` (WhatsApp keeps `whatsapp:`), to be
        answered from the number they wrote to. An MMS is answered on SMS: the same number pair,
        and the send API has no separate MMS channel (media goes out as MMS when configured)."""
        if contact.provider != KEY or contact.channel not in CHANNELS:
            return None
        channel = Channel.SMS if contact.channel is Channel.MMS else contact.channel
        to = _raw_sender(contact) or _phone_of(contact)
        if to is None:
            return None
        return ReplyTarget(
            contact_id=contact.id,
            case_id=contact.case_id,
            channel=channel,
            provider=KEY,
            account=_address(channel, _bare(contact.account)),
            to=_address(channel, _bare(to)),
            # Twilio's Messages API has no reply-to field: SMS has no threads, and WhatsApp
            # quoting is not exposed (only received, as OriginalRepliedMessageSid).
            reply=ReplyContext(),
            at=contact.sent_at or contact.received_at,
        )

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        if channel not in CHANNELS:
            return None
        phone = next((i.value for i in identifiers if i.kind == "phone"), None)
        return None if phone is None else _address(channel, phone)

    def default_account(self, channel: Channel) -> str | None:
        if not self._can_send(channel):
            return None
        numbers = self._numbers(channel)
        if numbers:
            return _address(channel, numbers[0])
        return self.settings.messaging_service_sid

    def sends_from(self, channel: Channel, account: str) -> bool:
        """A configured number (in the channel's form), the Messaging Service itself, or, with a
        Messaging Service or no `numbers` list, any number: Twilio checks it belongs to the
        account or the service's sender pool."""
        if not self._can_send(channel):
            return False
        if account == self.settings.messaging_service_sid:
            return True
        number = _number(channel, account)
        if number is None:
            return False
        numbers = self._numbers(channel)
        return not numbers or number in numbers or self.settings.messaging_service_sid is not None

    def fallback_template(self, channel: Channel, account: str) -> TemplateMessage | None:
        fallback = self.settings.whatsapp_fallback_template
        if channel is not Channel.WHATSAPP or fallback is None:
            return None
        return TemplateMessage(name=fallback.name, language=fallback.language, parameters=list(fallback.parameters))

    def check(self, message: OutboundMessage) -> list[Problem]:
        if message.channel not in CHANNELS:
            return [Problem("channel", f"Twilio cannot send on {message.channel.value}")]
        if not self.settings.account_sid:
            return [Problem("channel", "channels.twilio.account_sid is not configured: the hub cannot send through Twilio")]
        problems: list[Problem] = []
        if _number(message.channel, message.to) is None:
            form = "whatsapp:+<E.164>" if message.channel is Channel.WHATSAPP else "an E.164 number (+14155550100)"
            problems.append(Problem("to", f"must be {form} for Twilio {message.channel.value}"))
        if not self.sends_from(message.channel, message.account):
            problems.append(Problem("account", "is not a sender configured in channels.twilio (numbers or messaging_service_sid)"))
        if message.template is not None:
            problems += self._template_problems(message)
        else:
            problems += self._text_problems(message) + self._attachment_problems(message)
        return problems

    def request_form(self, message: OutboundMessage) -> list[tuple[str, str]]:
        """The form fields of the create-message request, in order (`MediaUrl` repeats)."""
        settings = self.settings
        form = [("To", _address(message.channel, _bare(message.to)))]
        if message.account != settings.messaging_service_sid:
            form.append(("From", _address(message.channel, _bare(message.account))))
        if settings.messaging_service_sid:
            form.append(("MessagingServiceSid", settings.messaging_service_sid))
        if message.template is not None:
            # A Content template carries its own text and media: Body and MediaUrl must go
            # (error 63016's page), and only ContentSid starts a WhatsApp conversation.
            template = settings.templates.get(message.template.name)
            sid = template.sid_for(message.template.language) if template else None
            if sid is None:
                raise PermanentDeliveryError(f"template {message.template.name!r} ({message.template.language}) is not configured")
            form.append(("ContentSid", sid))
            if message.template.parameters:
                variables = {str(i): value for i, value in enumerate(message.template.parameters, start=1)}
                form.append(("ContentVariables", json.dumps(variables, ensure_ascii=False)))
        else:
            if message.text:
                form.append(("Body", message.text))
            form += [("MediaUrl", attachment.url) for attachment in message.attachments]
        form.append(("StatusCallback", hook_url(settings.public_url, "status")))
        return form

    # --- the provider call ----------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendOutcome:
        account_sid = self.settings.account_sid
        if not account_sid:
            raise PermanentDeliveryError("channels.twilio.account_sid is not configured")
        url = f"{self.settings.api_base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        body = urlencode(self.request_form(message)).encode()

        def post(credential: tuple[str, str]) -> SendOutcome:
            username, password = credential
            headers = {
                "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii"),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                IDEMPOTENCY_HEADER: message.id,
            }
            return outcome(self.runtime.http.request("POST", url, headers=headers, body=body))

        return first_accepted(self._credentials(), post, none_configured="no Twilio credential is configured")

    # --- helpers ----------------------------------------------------------------------------------

    def _can_send(self, channel: Channel) -> bool:
        return channel in CHANNELS and bool(self.settings.account_sid)

    def _numbers(self, channel: Channel) -> list[str]:
        numbers = self.settings.numbers
        return numbers.whatsapp if channel is Channel.WHATSAPP else numbers.sms

    def _credentials(self) -> list[tuple[str, str]]:
        """(username, password) pairs to try in order: the API keys, else the Account SID with the
        Auth Tokens the webhooks are verified with (primary first). One that cannot be resolved
        is skipped (`SecretResolver.get_all`'s rule); none at all makes the send retryable."""
        settings = self.settings
        if settings.api_credentials:
            pairs = [(key.sid, key.secret) for key in settings.api_credentials]
        else:
            pairs = [(settings.account_sid or "", token) for token in settings.auth_tokens]
        resolved: list[tuple[str, str]] = []
        failure = "no credential is configured"
        for username, secret in pairs:
            try:
                resolved.append((username, self.secrets.get(secret)))
            except SecretResolutionError as exc:
                logger.warning("a Twilio credential of the rotation list is skipped: %s", exc.message)
                failure = exc.message
        if not resolved:
            # An SSM throttle or outage: the message waits on the queue instead of failing.
            raise RetryableDeliveryError(f"Twilio credentials could not be read: {failure}")
        return resolved

    def _template_problems(self, message: OutboundMessage) -> list[Problem]:
        requested = message.template
        assert requested is not None
        template = self.settings.templates.get(requested.name)
        if template is None:
            configured = ", ".join(sorted(self.settings.templates)) or "none"
            return [Problem("template.name", f"{requested.name!r} is not in channels.twilio.templates (configured: {configured})")]
        problems: list[Problem] = []
        if template.sid_for(requested.language) is None:
            languages = ", ".join(template.language_codes)
            problems.append(Problem("template.language", f"{requested.name!r} has no {requested.language!r} version (configured: {languages})"))
        if len(requested.parameters) != template.parameters:
            problems.append(Problem("template.parameters", f"{requested.name!r} takes {template.parameters} parameters, {len(requested.parameters)} given"))
        for i, value in enumerate(requested.parameters):
            if utf16_length(value) > MAX_BODY:
                problems.append(Problem(f"template.parameters[{i}]", f"is {utf16_length(value)} characters; Twilio takes at most {MAX_BODY}"))
        if message.attachments:
            problems.append(Problem("attachments", "cannot be sent with a Content template: the template carries its own media"))
        return problems

    def _text_problems(self, message: OutboundMessage) -> list[Problem]:
        text = message.text or ""
        if not text and not message.attachments:
            return [Problem("text", "is empty: Twilio needs text, an attachment or a template")]
        length = utf16_length(text)
        sms = message.channel is not Channel.WHATSAPP and not message.attachments
        if length > MAX_BODY:
            detail = ""
            if sms:
                parts = segments(text)
                detail = f" ({parts.count} {parts.encoding} segments of {parts.per_segment})"
            return [Problem("text", f"is {length} characters{detail}; Twilio takes at most {MAX_BODY}")]
        limit = self.settings.sms_max_segments
        if sms and limit is not None:
            parts = segments(text)
            if parts.count > limit:
                return [Problem("text", f"needs {parts.count} {parts.encoding} segments of {parts.per_segment} characters; "
                                        f"channels.twilio.sms_max_segments allows {limit}")]
        return []

    def _attachment_problems(self, message: OutboundMessage) -> list[Problem]:
        attachments = message.attachments
        if not attachments:
            return []
        if message.channel is Channel.WHATSAPP:
            limit, what = MAX_WHATSAPP_MEDIA, "a WhatsApp message through Twilio carries one attachment"
        elif not self.settings.mms:
            return [Problem("attachments", "cannot be sent: the Twilio numbers are not configured for MMS (channels.twilio.mms)")]
        else:
            limit, what = MAX_MEDIA, f"Twilio takes at most {MAX_MEDIA} media URLs per message"
        problems = [Problem("attachments", f"has {len(attachments)} items; {what}")] if len(attachments) > limit else []
        for i, attachment in enumerate(attachments):
            if not is_http_url(attachment.url):
                problems.append(Problem(f"attachments[{i}].url", "must be an http(s) URL Twilio can fetch"))
        return problems


def outcome(response: HttpResponse) -> SendOutcome:
    """Twilio's answer to a create-message request as an outcome, or the error it means."""
    if not response.ok:
        raise_for_twilio(response)
    answer = json_object(response.body)
    sid = answer.get("sid")
    if not isinstance(sid, str) or not sid:
        raise PermanentDeliveryError(f"Twilio answered {response.status} without a message sid")
    metadata = {key: str(answer[field]) for field, key in (("status", "twilio_status"), ("num_segments", "num_segments"),
                                                            ("from", "from")) if answer.get(field) is not None}
    return SendOutcome(provider_message_id=sid, metadata=metadata)


def raise_for_twilio(response: HttpResponse) -> None:
    """Classify a Twilio error answer (`{"code", "message", "more_info", "status"}`,
    https://www.twilio.com/docs/api/errors/400): opted out, outside the window, retryable
    (429, 5xx, with `Retry-After`) or permanent with Twilio's `code`."""
    answer = json_object(response.body)
    code = str(answer["code"]) if isinstance(answer.get("code"), (int, str)) and answer.get("code") != "" else None
    said = answer.get("message") if isinstance(answer.get("message"), str) else response.text()
    # Twilio's messages quote the numbers ("The 'To' number +1… is not valid"): kept out of logs.
    reason = f"Twilio answered {response.status}" + (f" with error {code}" if code else "") + f": {_PHONE_LIKE.sub('…', said)[:300]}"
    if code == OPTED_OUT:
        raise RecipientOptedOutError(reason, provider_code=code)
    if code == OUTSIDE_WINDOW:
        raise OutsideServiceWindowError(reason, provider_code=code)
    if response.status == 401:
        # Nothing was sent: the next credential of the rotation list is safe to try.
        raise CredentialRefusedError(reason, provider_code=code)
    if response.status in RETRYABLE_STATUSES or response.status >= 500:
        raise RetryableDeliveryError(reason, retry_after=retry_after_seconds(response.headers))
    if 300 <= response.status < 400:
        raise PermanentDeliveryError(f"Twilio answered a redirect ({response.status}), which is not followed")
    raise PermanentDeliveryError(reason, provider_code=code)


def _bare(address: str) -> str:
    """The number of a Twilio address: `whatsapp:+1…` → `+1…`."""
    return address[len(WHATSAPP_PREFIX):] if address.lower().startswith(WHATSAPP_PREFIX) else address


def _address(channel: Channel, number: str) -> str:
    """A number as Twilio addresses it on `channel`: `whatsapp:+E164` on WhatsApp, else `+E164`."""
    return WHATSAPP_PREFIX + number if channel is Channel.WHATSAPP else number


def _number(channel: Channel, address: str) -> str | None:
    """The E.164 number of `address` if it is in a form valid for `channel`, else None: SMS takes
    a bare number only; WhatsApp also takes one without its prefix (the sender adds it)."""
    if channel is Channel.WHATSAPP:
        address = _bare(address)
    return address if E164.fullmatch(address) else None


def _raw_sender(contact: Contact) -> str | None:
    value = contact.raw.get("From")
    return value if isinstance(value, str) and _number(Channel.WHATSAPP, value) else None


def _phone_of(contact: Contact) -> str | None:
    """The customer's normalized phone number, for a contact whose raw payload was erased."""
    return next((i.value for i in contact.sender.identifiers if i.kind == "phone"), None)
