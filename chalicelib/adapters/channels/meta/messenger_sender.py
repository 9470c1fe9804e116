"""Messenger and Instagram sends through the Send API: text or one attachment by URL, to a
page-scoped (PSID) or Instagram-scoped (IGSID) id. https://developers.facebook.com/docs/messenger-platform/reference/send-api"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.channels.meta.core import MessagingAccount, MetaSettings
from chalicelib.adapters.channels.meta.graph import url_problems
from chalicelib.adapters.channels.meta.messenger import MESSAGING_OBJECTS
from chalicelib.adapters.channels.sending import ExtendedWindow, Problem, text_problem
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage

#: Messenger: `message.text` "must be UTF-8 and less than 2000 characters".
MESSENGER_TEXT_LIMIT = 1999
#: Instagram: "Message text must be UTF-8 and be a 1000 bytes or less" (the Limitations list of
#: the same page says "less than 1000 characters"; the stricter reading is kept).
INSTAGRAM_TEXT_BYTES = 1000
#: The only tag the hub sends: a human agent's reply up to 7 days after the customer's last message.
HUMAN_AGENT = "HUMAN_AGENT"
HUMAN_AGENT_WINDOW = ExtendedWindow(hours=7 * 24, tag=HUMAN_AGENT)
#: Attachment types by URL; Instagram documents images, video and audio only.
ATTACHMENT_TYPES = {Channel.MESSENGER: ("image", "video", "audio", "file"), Channel.INSTAGRAM: ("image", "video", "audio")}
#: The identifier kind of each channel's recipients (`messenger:<page>/<PSID>`, `instagram:<ig account>/<IGSID>`).
KINDS = {channel: kind for channel, kind in MESSAGING_OBJECTS.values()}


def accounts(settings: MetaSettings, channel: Channel) -> dict[str, MessagingAccount]:
    return settings.pages if channel == Channel.MESSENGER else settings.instagram


def reply_target(contact: Contact) -> ReplyTarget | None:
    """Answer from the Page / Instagram account written to (the inbound `entry.id`), to the
    sender's scoped id. The Send API threads by conversation, so `reply` names the message only
    for the optional `reply_to` quote."""
    kind = KINDS.get(contact.channel)
    to = next((i.value for i in contact.sender.identifiers if i.kind == kind and i.scope == contact.account), None)
    if to is None:
        return None
    return ReplyTarget(
        contact_id=contact.id, case_id=contact.case_id, channel=contact.channel, provider=contact.provider,
        account=contact.account, to=to, reply=ReplyContext(provider_message_id=contact.provider_message_id),
        at=contact.sent_at or contact.received_at,
    )


def extended_window(settings: MetaSettings, channel: Channel, account: str | None) -> ExtendedWindow | None:
    """HUMAN_AGENT when the account (without one: every configured account) enables it."""
    configured = accounts(settings, channel)
    enabled = [configured[account]] if account in configured else [] if account else list(configured.values())
    return HUMAN_AGENT_WINDOW if enabled and all(a.human_agent for a in enabled) else None


def check(settings: MetaSettings, message: OutboundMessage) -> list[Problem]:
    channel = message.channel
    account = accounts(settings, channel).get(message.account)
    section = "pages" if channel == Channel.MESSENGER else "instagram"
    problems: list[Problem] = []
    if account is None:
        problems.append(Problem("account", f"{message.account[:40]!r} is not in channels.meta.{section}"))
    if not message.to.isdigit():
        problems.append(Problem("to", f"must be the customer's numeric {channel.value}-scoped id"))
    if message.template is not None:
        problems.append(Problem("template", f"{channel.value} takes no templates"))
    if message.tag is not None:
        if message.tag != HUMAN_AGENT:
            problems.append(Problem("tag", f"only {HUMAN_AGENT} is sent"))
        elif account is not None and not account.human_agent:
            problems.append(Problem("tag", f"{HUMAN_AGENT} is not enabled for {message.account} (channels.meta.{section}.<id>.human_agent)"))
    if len(message.attachments) > 1 or (message.attachments and message.text):
        problems.append(Problem("attachments", "the Send API takes text or one attachment per message: send each separately"))
    elif message.attachments:
        attachment = message.attachments[0]
        problems += url_problems(attachment.url, "attachments[0].url")
        if attachment_type(attachment, channel) is None:
            problems.append(Problem("attachments[0].content_type", f"{channel.value} sends images, video and audio only"))
    elif not message.text:
        problems.append(Problem("text", "is required without an attachment"))
    elif channel == Channel.INSTAGRAM:
        size = len(message.text.encode())
        if size > INSTAGRAM_TEXT_BYTES:
            problems.append(Problem("text", f"is {size} bytes in UTF-8; Instagram takes at most {INSTAGRAM_TEXT_BYTES}"))
    else:
        problems += text_problem(message.text, MESSENGER_TEXT_LIMIT)
    return problems


def attachment_type(attachment: OutboundAttachment, channel: Channel) -> str | None:
    major = (attachment.content_type or "").split("/")[0].strip().lower()
    kind = major if major in ("image", "video", "audio") else "file"
    return kind if kind in ATTACHMENT_TYPES[channel] else None


def endpoint(settings: MetaSettings, channel: Channel, account: str) -> str:
    """Messenger: the Page's `/messages`. Instagram: the linked Page's on graph.facebook.com, or
    the account's own on graph.instagram.com (Instagram API with Instagram Login)."""
    configured = accounts(settings, channel)[account]
    if channel == Channel.INSTAGRAM and configured.page_id is None:
        return f"{settings.instagram_api_base_url}/{settings.graph_version}/{account}/messages"
    return f"{settings.api_base_url}/{settings.graph_version}/{configured.page_id or account}/messages"


def payload(settings: MetaSettings, message: OutboundMessage) -> dict[str, Any]:
    """The Send API body for `message` (already `check`ed): RESPONSE inside the window, MESSAGE_TAG
    with the tag the window check chose past it."""
    body: dict[str, Any] = {"recipient": {"id": message.to}}
    if message.tag:
        body.update(messaging_type="MESSAGE_TAG", tag=message.tag)
    else:
        body["messaging_type"] = "RESPONSE"
    if message.attachments:
        attachment = message.attachments[0]
        kind = attachment_type(attachment, message.channel) or "file"
        body["message"] = {"attachment": {"type": kind, "payload": {"url": attachment.url, "is_reusable": False}}}
    else:
        body["message"] = {"text": message.text}
    account = accounts(settings, message.channel)[message.account]
    if account.reply_to and message.reply.provider_message_id:
        body["reply_to"] = {"mid": message.reply.provider_message_id}
    return body
