"""Amazon SES inbound email through an SNS HTTPS subscription: https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html

`POST /webhooks/ses` receives SNS messages. Each one is proved to come from SNS by its RSA
signature (`sns_signature`), its topic must be on the allow-list, and its timestamp inside a
window; then a `SubscriptionConfirmation` is confirmed, an `UnsubscribeConfirmation` is logged,
and a `Notification` carrying an SES `Received` notification becomes one email message. The SES
S3 delivery (`s3_pull.py`, the pull entry) builds its messages with the same `SesAdapter.email_message`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from chalicelib.adapters.channels.ses.settings import (  # noqa: F401 (re-exported)
    DEFAULT_MAX_AGE_SECONDS,
    SesSettings,
)
from chalicelib.adapters.channels.base import (
    AdapterServices,
    ChannelAdapter,
    ParsedWebhook,
    PullContext,
    PullEntry,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
)
from chalicelib.adapters.channels.ses import sns_signature as sns
from chalicelib.adapters.channels.ses.verdicts import (
    PASS,
    EmailIgnored,
    EmailUnreadable,
    Verdicts,
    domain_of,
)
from chalicelib.domain.models import Attachment, Channel, ContentType, Handle, InboundMessage, Sender, StatusEvent
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError, TransientError
from chalicelib.signing.window import check_window

MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"
NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

#: The `SigningCertURL` path of messages signed with `test_signing_keys` (`hubctl simulate`, tests).
#: AWS serves no such file: without test keys configured, a message naming it fails verification.
SIMULATED_CERT_PATH = "/SimpleNotificationService-hub-simulated.pem"

#: SES feedback about mail we sent (identity notifications' `notificationType`, or a configuration
#: set's event publishing `eventType`) → (the hub's delivery vocabulary, the key of its detail
#: object). https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
#: A complaint follows delivery: `failed` ranks below `delivered`, so it never moves the message
#: back, while `opted_out` records the customer's wish. A delivery delay says SES still tries
#: (`sending`: no progress either way).
FEEDBACK: dict[str, tuple[str, str]] = {
    "Send": ("sent", "send"),
    "Delivery": ("delivered", "delivery"),
    "Bounce": ("failed", "bounce"),
    "Complaint": ("failed", "complaint"),
    "Reject": ("failed", "reject"),
    "Rendering Failure": ("failed", "failure"),
    "DeliveryDelay": ("sending", "deliveryDelay"),
    "Open": ("read", "open"),
    "Click": ("read", "click"),
}
#: Where each feedback names its recipients (else `mail.destination`).
_RECIPIENTS = {"Delivery": "recipients", "Bounce": "bouncedRecipients", "Complaint": "complainedRecipients",
               "DeliveryDelay": "delayedRecipients"}

#: Clock skew tolerated for a timestamp in the future.
FUTURE_SKEW = timedelta(minutes=5)
#: Text kept per message: a long email thread must not outgrow the store's item limit.
MAX_TEXT_CHARS = 32_000

_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\r\n]+")
#: SES ids are 40 lower-case alphanumerics; S3 keys allow more, but never control characters.
_MESSAGE_ID = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,512}")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
#: Nesting kept from a notification; deeper values are dropped (SES's own JSON is four levels deep).
MAX_DEPTH = 16


# --- the adapter -------------------------------------------------------------------------------


@dataclass
class _Envelope:
    """An SNS message body, decoded once per request (verify and parse both read it)."""

    data: dict[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        return value if isinstance(value, str) else None


@lru_cache(maxsize=8)
def _decode(body: bytes) -> _Envelope | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers UnicodeDecodeError and JSONDecodeError
        return None
    return _Envelope(data) if isinstance(data, dict) else None


class SesAdapter(ChannelAdapter[SesSettings]):
    """SES receipt notifications through SNS; also the email normalization of the S3 delivery."""

    key: ClassVar[str] = "ses"
    docs_url: ClassVar[str] = "https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html"
    Settings: ClassVar[type[BaseModel]] = SesSettings
    #: SNS posts `text/plain; charset=UTF-8` unless the delivery policy's `headerContentType` says otherwise.
    content_types: ClassVar[tuple[str, ...]] = ("text/plain", "application/json")
    #: Mail an S3 action stored: the bucket announces each object on a standard queue (S3 cannot
    #: notify FIFO queues, and `chalice package` cannot express `on_s3_event`): docs/channels/ses.md.
    #: Reading and parsing one stored email (up to 40 MB) and one enqueue fit the reserve.
    pull_entries: ClassVar[tuple[PullEntry, ...]] = (PullEntry("ses-inbound", fifo=False, reserve_seconds=10.0),)
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.ses.sender:SesSender"

    def __init__(
        self,
        settings: SesSettings,
        secrets,
        services: AdapterServices | None = None,
        *,
        fetch: sns.Fetcher | None = None,
        certificates: sns.CertificateCache | None = None,
    ) -> None:
        """`fetch` GETs signing certificates and SubscribeURLs (default: urllib3 with short
        timeouts); tests inject a fake. `certificates` lets several adapters share one cache."""
        super().__init__(settings, secrets, services)
        self._fetch: sns.Fetcher = fetch or sns.Urllib3Fetcher()
        self.certificates = certificates or sns.CertificateCache(self._fetch)

    @cached_property
    def _test_keys(self) -> list:
        keys = []
        for pem in self.secrets.get_all(self.settings.test_signing_keys):
            try:
                keys.append(sns.load_private_key(pem))
            except sns.CertificateError as exc:
                raise SignatureError(f"a configured test_signing_keys entry is unusable: {exc}") from None
        return keys

    @cached_property
    def _own_addresses(self) -> frozenset[str]:
        return frozenset(self.settings.own_addresses)

    # --- verify --------------------------------------------------------------------------------

    def pull(self, entry: PullEntry, body: str, context: PullContext) -> ParsedWebhook:
        """One S3 event notification from the ses-inbound queue: the mail stored in the bucket
        (`s3_prefix`) becomes messages, read and normalized exactly like the SNS delivery."""
        from chalicelib.adapters.channels.ses.s3_pull import read_s3_notification

        return read_s3_notification(body, s3_client=context.aws_client("s3"), adapter=self,
                                    received_at=context.received_at)

    def verify(self, request: WebhookRequest) -> None:
        envelope = _decode(request.body)
        if envelope is None:
            # Not a JSON object: nothing here can be authenticated, and parse() rejects it with a
            # 400 (MalformedPayloadError) before anything is read from it.
            return
        kind = envelope.text("Type")
        if kind not in sns.SIGNED_FIELDS:
            raise SignatureError("Type is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation")
        header = request.header(MESSAGE_TYPE_HEADER)
        if header is not None and header != kind:
            raise SignatureError(f"{MESSAGE_TYPE_HEADER} does not match the body's Type")
        topic = envelope.text("TopicArn")
        if topic not in self.settings.topic_arns:
            raise ForbiddenError("TopicArn is not in this hub's ses.topic_arns")
        version = envelope.text("SignatureVersion")
        if version not in sns.HASHES:
            raise SignatureError("SignatureVersion must be 1 or 2")
        cert_url = envelope.text("SigningCertURL") or ""
        # Checked before anything is fetched: only https from a genuine SNS host.
        if not sns.is_signing_cert_url(cert_url):
            raise SignatureError("SigningCertURL is not an https .pem URL on an sns.<region>.amazonaws.com host")
        if kind != NOTIFICATION and not sns.is_subscribe_url(envelope.text("SubscribeURL") or "", topic):
            raise SignatureError("SubscribeURL is not a ConfirmSubscription URL on an SNS host for this topic")
        self._check_timestamp(envelope.text("Timestamp"), request.received_at)
        signature = sns.decode_signature(envelope.data.get("Signature"))
        try:
            signed = sns.string_to_sign(envelope.data)
        except ValueError as exc:
            raise SignatureError(f"cannot rebuild the signed string: {exc}") from None
        digest = sns.HASHES[version]
        matched = False
        for key in self._public_keys(cert_url, request.received_at):
            matched |= sns.verify_pkcs1_v15(key, signature, signed, digest)
        if not matched:
            raise SignatureError("the SNS signature does not match the message")

    def _public_keys(self, cert_url: str, now: datetime) -> list:
        if urlsplit(cert_url).path == SIMULATED_CERT_PATH and self.settings.test_signing_keys:
            return [key.public_key() for key in self._test_keys]
        return [self.certificates.public_key(cert_url, now)]

    def _check_timestamp(self, value: str | None, now: datetime) -> None:
        try:
            sent = datetime.fromisoformat(value or "")
        except ValueError:
            raise SignatureError("Timestamp is missing or not ISO 8601") from None
        if sent.tzinfo is None:
            raise SignatureError("Timestamp has no time zone")
        # Older: a replay, or a very late retry. Newer: a clock SNS does not have.
        check_window(sent.timestamp(), now, max_age=self.settings.max_message_age_seconds,
                     max_future=FUTURE_SKEW.total_seconds(), field="Timestamp", setting="max_message_age_seconds")

    # --- parse ---------------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        envelope = _decode(request.body)
        if envelope is None:
            raise MalformedPayloadError("body is not an SNS message (a JSON object)")
        kind, topic = envelope.text("Type"), envelope.text("TopicArn")
        if kind == SUBSCRIPTION_CONFIRMATION:
            return ParsedWebhook(ignored=[self._confirm(envelope)])
        if kind == UNSUBSCRIBE_CONFIRMATION:
            # Nothing to do: calling its SubscribeURL would subscribe the endpoint again.
            return ParsedWebhook(ignored=[f"UnsubscribeConfirmation for {topic}: the subscription has ended"])
        if kind != NOTIFICATION:
            raise MalformedPayloadError("Type is not an SNS message type")
        message = envelope.data.get("Message")
        if not isinstance(message, str):
            raise MalformedPayloadError("Notification without a Message string")
        try:
            notification = json.loads(message)
        except (ValueError, RecursionError):
            notification = None
        if not isinstance(notification, dict):
            reason = f"Message on {topic} is not an SES notification (not a JSON object)"
            return ParsedWebhook(unhandled=[self.unhandled(reason, message, request)])
        notification = _clean(notification)
        kind = notification.get("notificationType") or notification.get("eventType")
        try:
            if kind in FEEDBACK:
                return ParsedWebhook(events=[self._feedback(kind, notification, request)])
            if kind != "Received":
                raise EmailUnreadable(f"SES notificationType {str(kind)[:40]!r} is not handled")
            return ParsedWebhook(events=[self._received(notification, envelope, request)])
        except EmailUnreadable as unreadable:
            return ParsedWebhook(unhandled=[self.unhandled(str(unreadable), notification, request)])
        except EmailIgnored as ignored:
            return ParsedWebhook(ignored=[str(ignored)])

    def _confirm(self, envelope: _Envelope) -> str:
        """GET the SubscribeURL (verified, topic allowed, host checked in verify): SNS delivers
        nothing until it is called. A failure is transient (503): SNS sends the confirmation again."""
        topic, url = envelope.text("TopicArn"), envelope.text("SubscribeURL") or ""
        # verify() checked both; checked again so that nothing is ever fetched without the checks.
        if topic not in self.settings.topic_arns:
            raise ForbiddenError("TopicArn is not in this hub's ses.topic_arns")
        if not sns.is_subscribe_url(url, topic):
            raise SignatureError("SubscribeURL is not a ConfirmSubscription URL on an SNS host for this topic")
        response = self._fetch(url)
        if response.status != 200:
            raise TransientError(f"SNS answered {response.status} to ConfirmSubscription for {topic}")
        return f"SubscriptionConfirmation for {topic}: confirmed"

    def _feedback(self, kind: str, notification: dict, request: WebhookRequest) -> StatusEvent:
        """SES feedback about mail we sent (Send, Delivery, Bounce, Complaint, Open...), which often
        shares the inbound topic: a status of that message (its SES message id, which `SendEmail`
        returned), never a contact.
        https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html"""
        mail = _object(notification.get("mail"))
        message_id = mail.get("messageId")
        if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id.strip()):
            raise EmailUnreadable(f"SES {kind} notification without a usable mail.messageId")
        status, detail_key = FEEDBACK[kind]
        detail = _object(notification.get(detail_key))
        people = detail.get(_RECIPIENTS.get(kind, ""))
        first = people[0] if isinstance(people, list) and people else None
        recipient = first if isinstance(first, str) else _object(first).get("emailAddress")
        if recipient is None:
            recipient = next(iter(_strings(mail.get("destination"))), None)
        error_code, error_message, opted_out = _feedback_error(kind, detail, _object(first))
        occurred = _iso(detail.get("timestamp")) or _iso(mail.get("timestamp"))
        return StatusEvent(
            provider=self.key,
            channel=Channel.EMAIL,
            provider_message_id=message_id.strip(),
            status=status,
            account=_first_string(mail.get("source")),
            recipient=recipient if isinstance(recipient, str) else None,
            occurred_at=occurred,
            received_at=request.received_at,
            error_code=str(error_code)[:64] if error_code else None,
            error_message=str(error_message)[:500] if error_message else None,
            opted_out=opted_out,
            raw={"notificationType": kind, detail_key: detail, "mail": _without_headers(mail)},
        )

    def _received(self, notification: dict, envelope: _Envelope, request: WebhookRequest) -> InboundMessage:
        topic = envelope.text("TopicArn")
        kind = "Received"
        receipt = _object(notification.get("receipt"))
        mail = _object(notification.get("mail"))
        action = _object(receipt.get("action"))
        message_id = mail.get("messageId")
        if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id.strip()):
            raise EmailUnreadable("SES notification without a usable mail.messageId")
        content = notification.get("content")
        if not isinstance(content, str):
            where = f"S3 bucket {str(action.get('bucketName'))[:64]}" if action.get("type") == "S3" else "no content"
            raise EmailIgnored(
                f"SES notification of action {str(action.get('type'))[:20]} carries no email ({where}); "
                "the S3 delivery (ses_s3) reads stored mail"
            )
        raw_mime = _content_bytes(content, action.get("encoding"))
        recipients, destination = _strings(receipt.get("recipients")), _strings(mail.get("destination"))
        return self.email_message(
            raw_mime,
            message_id=message_id.strip(),
            recipients=recipients or destination,
            verdicts=Verdicts.from_receipt(receipt, mail.get("source")),
            received_at=request.received_at,
            metadata={"delivery": "sns", "sns_message_id": _clean(envelope.text("MessageId")), "topic_arn": topic},
            raw={
                "sns": _clean({k: envelope.data.get(k) for k in ("Type", "MessageId", "TopicArn", "Timestamp")}),
                "notificationType": kind,
                "receipt": receipt,
                "mail": mail,
            },
        )

    # --- one email, whichever way it came ------------------------------------------------------

    def email_message(
        self,
        raw_mime: bytes,
        *,
        message_id: str,
        recipients: list[str],
        verdicts: Verdicts,
        received_at: datetime,
        metadata: dict[str, Any],
        raw: dict[str, Any],
        s3_object: str | None = None,
        retry_dns_failures: bool = False,
    ) -> InboundMessage:
        """The contact an SES-received email makes. Shared by the SNS and S3 deliveries, so an email
        both deliver dedupes to one contact (`provider_message_id` = the SES message id).

        Raises `EmailIgnored` for mail that must not open a case: spam or virus verdict FAIL, a
        bounce, an automatic reply, mail from our own addresses, no sender, unparseable MIME.
        `retry_dns_failures`: raise `TransientError` when DNS could not prove the sender, for the
        S3 delivery, whose queue retries for days; SNS gives up within a minute, so its mail is
        taken with the sender unproved rather than lost.
        """
        # Imported here: the registry imports every adapter, the email package only SES traffic.
        from chalicelib.adapters.channels.email.inbound import (
            MAX_ATTACHMENTS,
            MAX_EMBEDDED_BYTES,
            SenderCheck,
            attachment_content,
            proved_by_the_hub,
        )
        from chalicelib.adapters.channels.email.mime import MAX_REFERENCES, parse_email

        message_id = message_id.strip()
        if not _MESSAGE_ID.fullmatch(message_id):
            raise EmailIgnored("the SES message id is empty, too long or has control characters")
        if rejection := verdicts.rejection():
            raise EmailIgnored(f"email {message_id}: {rejection}")
        try:
            parsed = parse_email(raw_mime, own_addresses=self._own_addresses, max_attachment_bytes=MAX_EMBEDDED_BYTES)
        except MalformedPayloadError as exc:
            raise EmailUnreadable(f"email {message_id}: not a parseable email ({exc.message})") from None
        if parsed.is_bounce:
            raise EmailIgnored(f"email {message_id}: a bounce ({parsed.bounce_reason})")
        if parsed.is_auto_reply:
            raise EmailIgnored(f"email {message_id}: an automatic reply ({parsed.auto_reply_reason})")
        if parsed.from_own_address:
            raise EmailIgnored(f"email {message_id}: sent from one of our own_addresses")
        if not parsed.from_address:
            raise EmailIgnored(f"email {message_id}: no From address")
        sender = parsed.from_address.strip()
        check = proved_by_the_hub(
            SenderCheck(verified=verdicts.proves_sender(sender), spf=verdicts.spf, spf_domain=domain_of(verdicts.source),
                        dkim=verdicts.dkim),
            raw_mime, self.services.sender_verifier, sender, retry_dns_failures=retry_dns_failures,
        )
        account = next((r.strip().lower() for r in recipients if r.strip()), None)
        if account is None:
            account = next((a.lower() for a in [*parsed.to, *parsed.cc] if self._is_own(a)), None)
        if account is None:
            account = (parsed.to or parsed.cc or ["unknown"])[0].lower()

        text = _clip(parsed.text) or None
        # Like every email channel: a mail of 500 parts must not make a contact too big to store.
        files = parsed.attachments[:MAX_ATTACHMENTS]
        attachments = [
            Attachment(
                content_type=a.content_type,
                filename=a.filename,
                size=a.size,
                # Where the bytes came from (part `i` in parse_email's order): they travel with
                # the message (`attachment_content`) and the S3 object is deleted after a week.
                provider_media_id=f"{s3_object}#attachment-{i}" if s3_object else None,
            )
            for i, a in enumerate(files)
        ]
        if text or parsed.subject:
            content_type = ContentType.TEXT
        elif attachments:
            content_type = ContentType.MEDIA
        else:
            content_type = ContentType.UNSUPPORTED
        details: dict[str, Any] = {
            **{k: v for k, v in metadata.items() if v is not None},
            "email_message_id": parsed.message_id,
            "in_reply_to": parsed.in_reply_to,
            # The answered mail's References: a reply to this mail lists them before its id.
            "references": parsed.references[-MAX_REFERENCES:],
            "to": parsed.to,
            "cc": parsed.cc,
            "reply_to": parsed.reply_to,
            "recipients": recipients,
            "verdicts": verdicts.as_dict(),
            "sender_verification": check.as_metadata(),
        }
        if parsed.full_text.strip() != parsed.text.strip():
            details["full_text"] = _clip(parsed.full_text)
        if len(parsed.text) > MAX_TEXT_CHARS or len(parsed.full_text) > MAX_TEXT_CHARS:
            details["truncated"] = True
        if parsed.auto_reply_hint:
            details["auto_reply_hint"] = True
        if parsed.defects:
            details["mime_defects"] = parsed.defects[:20]
        content, left_out = attachment_content(files)
        if left_out:
            details["attachments_not_stored"] = left_out
        return InboundMessage(
            provider=self.key,
            channel=Channel.EMAIL,
            # The SES id, not Message-ID: SES assigns it once per received email and reuses it as
            # the S3 object key, so the SNS and S3 deliveries and every SNS retry dedupe to one
            # contact, while a sender-chosen Message-ID could collide or be reused.
            provider_message_id=message_id,
            account=account,
            sender=Sender(
                handles=[Handle(kind="email", value=sender, verified=check.verified)],
                display_name=parsed.from_name,
            ),
            sent_at=_utc(parsed.date),
            received_at=received_at,
            content_type=content_type,
            text=text,
            subject=parsed.subject,
            attachments=attachments,
            metadata={k: v for k, v in details.items() if v not in (None, [], {})},
            conversation_key=f"ses:{account}:{sender.lower()}",
            thread_keys=parsed.thread_keys,
            raw=raw,
            attachment_content=content,
        )

    def _is_own(self, address: str) -> bool:
        address = address.lower()
        return any(address == own or (own.startswith("@") and address.endswith(own)) for own in self._own_addresses)

    # --- hubctl simulate -----------------------------------------------------------------------

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest | None:
        """An SNS notification of an SES-received email from `customer`, signed with the first of
        `test_signing_keys`. None without test keys or topics: real SNS messages are signed by AWS,
        and no configured secret can produce one."""
        if not self.settings.test_signing_keys or not self.settings.topic_arns:
            return None
        topic = self.settings.topic_arns[0]
        mailbox = next((a for a in self.settings.own_addresses if not a.startswith("@")), "support@hub.example")
        now = datetime.now(timezone.utc)
        body = simulated_notification(
            self._test_keys[0],
            topic_arn=topic,
            recipient=mailbox,
            from_name=customer.name,
            from_address=customer.email,
            subject="Frage zu meiner Bestellung",
            text=customer.text,
            at=now,
        )
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": NOTIFICATION,
            "x-amz-sns-message-id": json.loads(body)["MessageId"],
            "x-amz-sns-topic-arn": topic,
        }
        return SimulatedRequest(path=f"/webhooks/{self.key}", body=body, headers=headers)


def simulated_notification(
    key,
    *,
    topic_arn: str,
    recipient: str,
    from_name: str,
    from_address: str,
    subject: str,
    text: str,
    at: datetime,
    version: str = "2",
    message_id: str | None = None,
) -> bytes:
    """An SNS Notification body exactly as SNS would post it for an SES SNS action (Base64
    encoding, all verdicts PASS), signed with `key` and naming `SIMULATED_CERT_PATH`."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    region = topic_arn.split(":")[3]
    ses_id = message_id or uuid.uuid4().hex + uuid.uuid4().hex[:8]
    email = EmailMessage()
    email["From"] = f"{from_name} <{from_address}>"
    email["To"] = recipient
    email["Subject"] = subject
    email["Date"] = format_datetime(at)
    email["Message-ID"] = make_msgid(domain=domain_of(from_address) or "customer.example")
    email.set_content(text)
    stamp = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    verdict = {"status": PASS}
    notification = {
        "notificationType": "Received",
        "mail": {
            "timestamp": stamp,
            "source": from_address,
            "messageId": ses_id,
            "destination": [recipient],
            "headersTruncated": False,
            "headers": [{"name": k, "value": str(v)} for k, v in email.items()],
            "commonHeaders": {"from": [email["From"]], "to": [recipient], "subject": subject},
        },
        "receipt": {
            "timestamp": stamp,
            "processingTimeMillis": 120,
            "recipients": [recipient],
            "spamVerdict": verdict, "virusVerdict": verdict, "spfVerdict": verdict,
            "dkimVerdict": verdict, "dmarcVerdict": verdict,
            "action": {"type": "SNS", "topicArn": topic_arn, "encoding": "BASE64"},
        },
        "content": base64.b64encode(email.as_bytes()).decode("ascii"),
    }  # fmt: skip
    message = {
        "Type": NOTIFICATION,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Subject": "Amazon SES Email Receipt Notification",
        "Message": json.dumps(notification, separators=(",", ":")),
        "Timestamp": stamp,
    }
    signed = sns.sign_message(message, key, version=version)
    signed["SigningCertURL"] = f"https://sns.{region}.amazonaws.com{SIMULATED_CERT_PATH}"
    signed["UnsubscribeURL"] = (
        f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:{uuid.uuid4()}"
    )
    return json.dumps(signed, indent=2).encode("utf-8")


def _clean(value: Any, depth: int = 0) -> Any:
    """A copy safe to put on the queue: lone surrogates (valid in JSON escapes, not in UTF-8)
    become U+FFFD, and nesting beyond `MAX_DEPTH` is dropped."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if depth >= MAX_DEPTH and isinstance(value, (dict, list)):
        return None
    if isinstance(value, dict):
        return {_clean(k, depth + 1): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    return value


def _utc(value: datetime | None) -> datetime | None:
    """The sender's Date in UTC; None when absent or out of range (a year-1 Date cannot be shifted)."""
    try:
        return value.astimezone(timezone.utc) if value else None
    except (OverflowError, ValueError):
        return None


def _iso(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _first_string(value: Any) -> str | None:
    return value[:320] if isinstance(value, str) and value else None


def _feedback_error(kind: str, detail: dict, first: dict) -> tuple[str | None, str | None, bool]:
    """(error code, reason, opted out) of one SES feedback notification."""
    if kind == "Bounce":
        code = "/".join(str(detail.get(k)) for k in ("bounceType", "bounceSubType") if detail.get(k))
        return code or "bounce", first.get("diagnosticCode") or first.get("status"), False
    if kind == "Complaint":
        # The recipient marked the mail as spam: the hub stops mailing them (consent ledger).
        return "complaint", detail.get("complaintFeedbackType") or detail.get("complaintSubType"), True
    if kind == "Reject":
        return "rejected", detail.get("reason"), False
    if kind == "Rendering Failure":
        return "rendering_failure", detail.get("errorMessage"), False
    if kind == "DeliveryDelay":
        return detail.get("delayType"), first.get("diagnosticCode"), False
    return None, None, False


def _without_headers(mail: dict) -> dict:
    """The `mail` object without the sent message's headers: a status needs the ids, not them."""
    return {k: v for k, v in mail.items() if k not in ("headers", "commonHeaders")}


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _content_bytes(content: str, encoding: Any) -> bytes:
    """The raw MIME of an SNS action's `content`: Base64 or UTF-8, as the action's encoding says.

    When the notification does not name it, the text decides: a MIME message always has a
    header line with ':' and spaces, which Base64 never contains.
    """
    name = str(encoding or "").replace("-", "").upper()
    raw = content.encode("utf-8", "surrogatepass")
    if name == "BASE64" or (not name and _BASE64_TEXT.fullmatch(raw)):
        try:
            return base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            if name == "BASE64":
                raise EmailUnreadable("content is declared Base64 but is not valid Base64") from None
    return raw


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]
