"""WhatsApp Cloud API sends: text, one media file by link, reply context, and templates.
https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.adapters.channels.meta.core import MetaSettings, template_problem
from chalicelib.adapters.channels.meta.graph import url_problems
from chalicelib.adapters.channels.sending import Problem, text_problem
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, TemplateMessage

#: "The text of the message ... Maximum 4096 characters."
TEXT_LIMIT = 4096
#: Media captions: "Maximum 1024 characters."
CAPTION_LIMIT = 1024
#: A wa_id: the international number without "+".
WA_ID = re.compile(r"[0-9]{4,20}")
#: A business-scoped user id (2026): country code, a period, then an id (`US.13491208655302741918`,
#: a parent `US.ENT.1181…`). Sent as `recipient` instead of `to`.
BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9.]{1,128}")
#: Media types WhatsApp plays inline; anything else goes as a document (which takes any type).
INLINE_MEDIA = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
}


def reply_target(contact: Contact) -> ReplyTarget | None:
    """Answer on the number the customer wrote to (`account`, the phone number id), to their
    wa_id (their BSUID when WhatsApp withheld the number), quoting their message."""
    to = recipient(contact)
    if to is None:
        return None
    return ReplyTarget(
        contact_id=contact.id, case_id=contact.case_id, channel=Channel.WHATSAPP, provider=contact.provider,
        account=contact.account, to=to, reply=ReplyContext(provider_message_id=contact.provider_message_id),
        at=contact.sent_at or contact.received_at,
    )


def recipient(contact: Contact) -> str | None:
    """The wa_id exactly as WhatsApp sent it (raw `from` / `contacts[].wa_id`), else the phone
    identifier's digits, else the BSUID."""
    raw = contact.raw if isinstance(contact.raw, dict) else {}
    for holder, key in ((raw.get("message"), "from"), (raw.get("contact"), "wa_id")):
        value = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(value, str) and WA_ID.fullmatch(value):
            return value
    return from_identifiers(contact.sender.identifiers)


def from_identifiers(identifiers) -> str | None:
    for kind in (IdentifierKind.PHONE, IdentifierKind.WHATSAPP_USER):
        for identifier in identifiers:
            if identifier.kind == kind:
                return identifier.value.lstrip("+") if kind == IdentifierKind.PHONE else identifier.value
    return None


def check(settings: MetaSettings, message: OutboundMessage) -> list[Problem]:
    whatsapp = settings.whatsapp
    if whatsapp is None:
        return [Problem("channel", "WhatsApp sending is not configured (channels.meta.whatsapp)")]
    problems: list[Problem] = []
    if message.account not in whatsapp.numbers:
        problems.append(Problem("account", f"phone number id {message.account[:40]!r} is not in channels.meta.whatsapp.numbers"))
    if not (WA_ID.fullmatch(message.to) or BSUID.fullmatch(message.to)):
        problems.append(Problem("to", "must be a WhatsApp id (the number's digits without +) or a business-scoped user id"))
    if message.tag:
        problems.append(Problem("tag", "WhatsApp has no message tags: outside the window only a template may be sent"))
    if message.template is not None:
        problem = template_problem(settings.templates, message.template)
        if problem:
            problems.append(Problem(f"template.{problem[0]}", problem[1]))
        if message.text or message.attachments:
            problems.append(Problem("template", "a template message carries only its parameters: no text or attachments"))
        return problems
    if len(message.attachments) > 1:
        problems.append(Problem("attachments", "WhatsApp sends one media file per message"))
    elif message.attachments:
        attachment = message.attachments[0]
        problems += url_problems(attachment.url, "attachments[0].url")
        if message.text and media_kind(attachment) == "audio":
            problems.append(Problem("text", "an audio message takes no caption: send the text separately"))
        elif message.text and len(message.text) > CAPTION_LIMIT:
            problems.append(Problem("text", f"is the attachment's caption: at most {CAPTION_LIMIT} characters, "
                                            f"not {len(message.text)}"))
    elif not message.text:
        problems.append(Problem("text", "is required without a template or an attachment"))
    else:
        problems += text_problem(message.text, TEXT_LIMIT)
    return problems


def payload(settings: MetaSettings, message: OutboundMessage) -> dict[str, Any]:
    """The `/messages` request body for `message` (already `check`ed)."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    # Since 2026 a BSUID goes in `recipient`; `to` stays the phone number field.
    body["to" if WA_ID.fullmatch(message.to) else "recipient"] = message.to
    if message.reply.provider_message_id:
        body["context"] = {"message_id": message.reply.provider_message_id}
    if message.template is not None:
        body.update(type="template", template=template_object(message.template))
    elif message.attachments:
        attachment = message.attachments[0]
        kind = media_kind(attachment)
        media: dict[str, Any] = {"link": attachment.url}
        if message.text and kind != "audio":
            media["caption"] = message.text
        if kind == "document":
            media["filename"] = filename(attachment)
        body.update(type=kind, **{kind: media})
    else:
        text = message.text or ""
        preview = bool(settings.whatsapp and settings.whatsapp.preview_urls and re.search(r"https?://", text))
        body.update(type="text", text={"preview_url": preview, "body": text})
    return body


def template_object(template: TemplateMessage) -> dict[str, Any]:
    # `policy: deterministic` is the only policy there is; the v23 spec requires it beside `code`.
    body: dict[str, Any] = {"name": template.name, "language": {"policy": "deterministic", "code": template.language}}
    if template.parameters:
        body["components"] = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in template.parameters]}]
    return body


def media_kind(attachment: OutboundAttachment) -> str:
    """image/video/audio for the types WhatsApp plays inline, else document (with its filename)."""
    content_type = (attachment.content_type or mimetypes.guess_type(urlsplit(attachment.url).path)[0] or "").lower()
    content_type = content_type.split(";")[0].strip()
    return next((kind for kind, types in INLINE_MEDIA.items() if content_type in types), "document")


def filename(attachment: OutboundAttachment) -> str:
    if attachment.filename:
        return attachment.filename
    name = unquote(urlsplit(attachment.url).path.rsplit("/", 1)[-1])
    return name or "document"

