"""Every channel the hub has, as its provider sends it: one request builder per channel, signed
exactly as that provider signs (Twilio's and Meta's with their own algorithms as the official
SDKs compute them, the others with the helpers the adapters document: Slack's v0, X's CRC
HMAC, Mailgun's token HMAC, SendGrid's ECDSA security policy, SNS's RSA signature over the
canonical string, the web chat's identity hash), and shaped after the stored fixtures in
tests/fixtures/.

Each builder takes a message number and a sender number and returns a `SignedWebhook` whose
`message_id` is the provider message id the hub puts on the contact: unique per message number
and per provider, so the soak's exactly-once check works the same for every channel. Signatures
with a timestamp are made with the current time (the hub checks them against its own clock).

`hub_config()` is the `channels:` section that accepts all of them, `email:` without DNS
lookups (DKIM is off: a soak must not depend on the network).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
TWILIO_URL = "https://hub.example.com/webhooks/twilio"
META_SECRET = "soak-meta-app-secret"
WEBCHAT_SECRET = "soak-webchat-identity-secret"
WEBCHAT_ORIGIN = "https://shop.example.com"
SLACK_SECRET = "soak-slack-signing-secret"
TELEGRAM_TOKEN = "soak-telegram-secret_01"
TELEGRAM_BOT = 7000000001
X_SECRET = "soak-x-consumer-secret"
X_ACCOUNT = "3001969357"
MAILGUN_KEY = "soak-mailgun-webhook-signing-key"
SENDGRID_PASSWORD = "soak-sendgrid-basic-password"
SENDGRID_PATH_TOKEN = "parse-50a4c0ffee0000000000000001"
SES_TOPIC = "arn:aws:sns:eu-central-1:123456789012:ses-inbound"
SES_CERT_URL = "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-hub-simulated.pem"


@dataclass(frozen=True)
class SignedWebhook:
    path: str
    body: bytes
    headers: dict[str, str]
    #: The provider message id the hub records on the contact this webhook becomes.
    message_id: str
    #: Which of BUILDERS made it.
    channel: str = ""


def hub_config() -> dict:
    """The hub's `channels:` and `email:` sections for every provider below."""
    return {
        "channels": {
            "twilio": {"auth_tokens": [TWILIO_TOKEN], "public_url": TWILIO_URL},
            "meta": {"app_secrets": [META_SECRET], "verify_tokens": ["soak-verify-token"]},
            "webchat": {"sites": [{"id": "shop", "identity_secrets": [WEBCHAT_SECRET],
                                   "allowed_origins": [WEBCHAT_ORIGIN]}]},
            "slack": {"signing_secrets": [SLACK_SECRET], "app_id": "A0HUB0001"},
            "telegram": {"secret_tokens": [TELEGRAM_TOKEN], "bot_id": TELEGRAM_BOT, "bot_username": "acme_support_bot"},
            "x": {"consumer_secrets": [X_SECRET], "user_ids": [X_ACCOUNT]},
            "mailgun": {"webhook_signing_keys": [MAILGUN_KEY], "own_addresses": ["support@mg.acme.example"]},
            "sendgrid": {"basic_auth": [{"username": "sendgrid", "password": SENDGRID_PASSWORD}],
                         "path_tokens": [SENDGRID_PATH_TOKEN], "signature_public_keys": [_sendgrid_public_key()],
                         "own_addresses": ["support@parse.acme.example"]},
            "ses": {"topic_arns": [SES_TOPIC], "own_addresses": ["@acme.example"],
                    "test_signing_keys": [_ses_key_pem()]},
        },
        "email": {"verify_dkim": False},
    }


# --- SMS and chat apps -----------------------------------------------------------------------------


def twilio_sms(index: int, sender: int) -> SignedWebhook:
    return _twilio(index, f"+1415555{sender:04d}", "+14155550100")


def twilio_whatsapp(index: int, sender: int) -> SignedWebhook:
    return _twilio(index + (1 << 124), f"whatsapp:+1415666{sender:04d}", "whatsapp:+14155550100")


def _twilio(index: int, sender: str, to: str) -> SignedWebhook:
    from twilio.request_validator import RequestValidator

    sid = f"SM{index:032x}"
    params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": sender, "To": to,
              "Body": f"Soak message {index}", "NumMedia": "0", "ApiVersion": "2010-04-01"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(TWILIO_URL, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return SignedWebhook("/webhooks/twilio", urlencode(params).encode(), headers, sid)


def meta_whatsapp(index: int, sender: int) -> SignedWebhook:
    wamid = f"wamid.SOAK{index:012d}"
    wa_id = f"1650555{sender:04d}"
    return _meta({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": f"Soak {sender}"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": f"Soak message {index}"}}]}}]}]}, wamid)


def meta_messenger(index: int, sender: int) -> SignedWebhook:
    return _meta_messaging("page", "1234567890", f"67890123{sender:08d}", f"m_SOAK{index:012d}", index)


def meta_instagram(index: int, sender: int) -> SignedWebhook:
    return _meta_messaging("instagram", "17841400000000000", f"55667788{sender:08d}", f"aWdfSOAK{index:012d}", index)


def _meta_messaging(kind: str, account: str, sender: str, mid: str, index: int) -> SignedWebhook:
    now = int(time.time() * 1000)
    return _meta({"object": kind, "entry": [{"id": account, "time": now, "messaging": [{
        "sender": {"id": sender}, "recipient": {"id": account}, "timestamp": now,
        "message": {"mid": mid, "text": f"Soak message {index}"}}]}]}, mid)


def _meta(payload: dict, message_id: str) -> SignedWebhook:
    body = json.dumps(payload, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return SignedWebhook("/webhooks/meta", body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature},
                         message_id)


def webchat(index: int, sender: int) -> SignedWebhook:
    """A logged-in visitor: the site's backend signs the external id (`user_hash`)."""
    external_id = f"cust-{sender:05d}"
    visitor, message = f"v_SOAK{sender:06d}", f"m_SOAK{index:012d}"
    body = json.dumps({"site_id": "shop", "visitor_id": visitor, "message_id": message,
                       "text": f"Soak message {index}", "identity": {"external_id": external_id},
                       "user_hash": hmac.new(WEBCHAT_SECRET.encode(), external_id.encode(), hashlib.sha256).hexdigest()},
                      separators=(",", ":")).encode()
    return SignedWebhook("/webhooks/webchat", body, {"Content-Type": "application/json", "Origin": WEBCHAT_ORIGIN},
                         f"shop/{visitor}/{message}")


def slack(index: int, sender: int) -> SignedWebhook:
    ts = f"{int(time.time())}.{index % 1_000_000:06d}"
    channel = f"D0S{sender:06d}"
    body = json.dumps({
        "token": "XXYYZZ", "team_id": "T0HUB0001", "api_app_id": "A0HUB0001",
        "event": {"type": "message", "user": f"U0S{sender:06d}", "text": f"Soak message {index}", "ts": ts,
                  "team": "T0HUB0001", "client_msg_id": f"soak-{index}", "channel": channel, "channel_type": "im",
                  "event_ts": ts},
        "type": "event_callback", "event_id": f"Ev0SOAK{index:08d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0HUB0001", "user_id": "U0HUBBOT1", "is_bot": True}],
        "is_ext_shared_channel": False}, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body,
                                 hashlib.sha256).hexdigest()
    return SignedWebhook("/webhooks/slack", body, {"Content-Type": "application/json",
                                                   "X-Slack-Request-Timestamp": timestamp,
                                                   "X-Slack-Signature": signature}, f"{channel}:{ts}")


def telegram(index: int, sender: int) -> SignedWebhook:
    user = 500_000_000 + sender
    update_id = 900_000_000 + index
    body = json.dumps({"update_id": update_id, "message": {
        "message_id": 10_000 + index, "from": {"id": user, "is_bot": False, "first_name": f"Soak {sender}"},
        "chat": {"id": user, "first_name": f"Soak {sender}", "type": "private"}, "date": int(time.time()),
        "text": f"Soak message {index}"}}, separators=(",", ":")).encode()
    return SignedWebhook("/webhooks/telegram", body, {"Content-Type": "application/json",
                                                      "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_TOKEN},
                         f"{TELEGRAM_BOT}:{update_id}")


def x_dm(index: int, sender: int) -> SignedWebhook:
    user, event_id = f"12213344{sender:08d}", f"19500000{index:011d}"
    body = json.dumps({"for_user_id": X_ACCOUNT, "direct_message_events": [{
        "type": "message_create", "id": event_id, "created_timestamp": str(int(time.time() * 1000)),
        "message_create": {"target": {"recipient_id": X_ACCOUNT}, "sender_id": user,
                           "message_data": {"text": f"Soak message {index}"}}}],
        "users": {user: {"id": user, "name": f"Soak {sender}", "screen_name": f"soak{sender}"},
                  X_ACCOUNT: {"id": X_ACCOUNT, "name": "Acme Support", "screen_name": "acmesupport"}}},
        separators=(",", ":")).encode()
    signature = "sha256=" + base64.b64encode(hmac.new(X_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return SignedWebhook("/webhooks/x", body, {"Content-Type": "application/json",
                                               "X-Twitter-Webhooks-Signature": signature}, event_id)


# --- email -------------------------------------------------------------------------------------------


def _mime(provider: str, index: int, sender: int, to: str) -> tuple[str, str]:
    message_id = f"soak.{provider}.{index}.{sender}@mail.customer.example"
    return message_id, (f"From: Soak {sender} <soak{sender}@customer.example>\r\nTo: {to}\r\n"
                        f"Subject: Order {index}\r\nMessage-ID: <{message_id}>\r\n"
                        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                        f"Content-Type: text/plain; charset=utf-8\r\n\r\nSoak message {index}\r\n")


def mailgun(index: int, sender: int) -> SignedWebhook:
    """A parsed route POST: the signature is in the body (HMAC of timestamp + token)."""
    message_id, _ = _mime("mailgun", index, sender, "support@mg.acme.example")
    timestamp, token = str(int(time.time())), hashlib.sha256(f"soak-token-{index}".encode()).hexdigest()[:50]
    fields = {
        "timestamp": timestamp, "token": token,
        "signature": hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest(),
        "recipient": "support@mg.acme.example", "sender": f"soak{sender}@customer.example",
        "from": f"Soak {sender} <soak{sender}@customer.example>", "subject": f"Order {index}",
        "body-plain": f"Soak message {index}", "stripped-text": f"Soak message {index}",
        "Message-Id": f"<{message_id}>",
        "message-headers": json.dumps([["From", f"Soak {sender} <soak{sender}@customer.example>"],
                                       ["To", "support@mg.acme.example"], ["Message-Id", f"<{message_id}>"]]),
    }
    return SignedWebhook("/webhooks/mailgun", urlencode(fields).encode(),
                         {"Content-Type": "application/x-www-form-urlencoded"}, message_id)


def sendgrid(index: int, sender: int) -> SignedWebhook:
    """Inbound Parse in raw mode, behind basic auth and a path token, with the security policy's
    ECDSA signature over timestamp + body."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    message_id, mime = _mime("sendgrid", index, sender, "support@parse.acme.example")
    boundary = "soakBoundary0000"
    parts = {"email": mime, "to": "support@parse.acme.example", "from": f"soak{sender}@customer.example",
             "envelope": json.dumps({"to": ["support@parse.acme.example"], "from": f"soak{sender}@customer.example"}),
             "dkim": "{@customer.example : pass}", "SPF": "pass"}
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                   for name, value in parts.items()).encode() + f"--{boundary}--\r\n".encode()
    timestamp = str(int(time.time()))
    signature = _sendgrid_private_key().sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return SignedWebhook(f"/webhooks/sendgrid/{SENDGRID_PATH_TOKEN}", body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": "Basic " + base64.b64encode(f"sendgrid:{SENDGRID_PASSWORD}".encode()).decode(),
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}, message_id)


def ses(index: int, sender: int) -> SignedWebhook:
    """A receipt rule's SNS action (content inline, base64), the notification signed as SNS signs
    (SignatureVersion 2) with the key of the simulated certificate `test_signing_keys` names.
    The hub keys SES mail by SES's own message id, not the MIME Message-ID."""
    from chalicelib.adapters.channels.ses import sns_signature

    _, mime = _mime("ses", index, sender, "support@inbound.acme.example")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ses_id = f"soak{index:012d}"
    notification = {
        "notificationType": "Received",
        "mail": {"timestamp": now, "source": f"soak{sender}@customer.example", "messageId": ses_id,
                 "destination": ["support@inbound.acme.example"]},
        "receipt": {"timestamp": now, "recipients": ["support@inbound.acme.example"],
                    **{f"{v}Verdict": {"status": "PASS"} for v in ("spam", "virus", "spf", "dkim", "dmarc")},
                    "action": {"type": "SNS", "topicArn": SES_TOPIC, "encoding": "BASE64"}},
        "content": base64.b64encode(mime.encode()).decode(),
    }
    envelope = sns_signature.sign_message({
        "Type": "Notification", "MessageId": f"5e5e{index:08d}-0000-4000-8000-{sender:012d}", "TopicArn": SES_TOPIC,
        "Subject": "Amazon SES Email Receipt Notification", "Message": json.dumps(notification), "Timestamp": now,
    }, _ses_key(), version="2")
    envelope["SigningCertURL"] = SES_CERT_URL
    return SignedWebhook("/webhooks/ses", json.dumps(envelope).encode(), {
        "Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification",
        "x-amz-sns-topic-arn": SES_TOPIC}, ses_id)


@cache
def _sendgrid_private_key():
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key((FIXTURES / "sendgrid" / "signing_key.pem").read_bytes(), password=None)


def _sendgrid_public_key() -> str:
    return (FIXTURES / "sendgrid" / "public_key.txt").read_text().strip()


def _ses_key_pem() -> str:
    return (FIXTURES / "ses" / "signing_key.pem").read_text()


@cache
def _ses_key():
    from chalicelib.adapters.channels.ses import sns_signature

    return sns_signature.load_private_key(_ses_key_pem())


#: Every channel, in the order the soak cycles through them (message n uses BUILDERS[n % len]).
BUILDERS: dict[str, Callable[[int, int], SignedWebhook]] = {
    "twilio_sms": twilio_sms, "twilio_whatsapp": twilio_whatsapp, "meta_whatsapp": meta_whatsapp,
    "meta_messenger": meta_messenger, "meta_instagram": meta_instagram, "webchat": webchat, "slack": slack,
    "telegram": telegram, "x": x_dm, "mailgun": mailgun, "sendgrid": sendgrid, "ses": ses,
}


def build(index: int, sender: int) -> SignedWebhook:
    """Message `index` from `sender`, on the channel its number picks."""
    channel = _CHANNELS[index % len(_CHANNELS)]
    return replace(BUILDERS[channel](index, sender), channel=channel)
_CHANNELS = list(BUILDERS)
