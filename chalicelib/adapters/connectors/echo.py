"""The echo marker: how the hub's own outbound messages are recognised on a ticket.

When the hub sends a customer a message, ticket connectors append it to the case's ticket as a
public comment (`message.sent`). The vendor then reports that comment back like any agent reply
(the next issue's vendor callbacks), and the hub must not send it to the customer a second time.
So every such comment ends with a marker line naming the outbound contact:

    [hub:ct_01JD0000000000000000000001]

The marker is plain text because that is what every vendor keeps through its round trip: Zendesk
comment metadata and Freshdesk/Jira comment properties cannot be set through the comment APIs the
hub uses, while the body comes back as written (Zendesk `body`/`plain_body`, Freshdesk
`body_text`, the Jira comment `body`, Salesforce `CommentBody`, HubSpot `hs_note_body`).

It is recognised by the token `hub:<id>` anywhere in the text, not by the brackets, so it survives
a vendor that escapes brackets (Jira wiki markup), wraps lines in HTML (Freshdesk, HubSpot) or
renders the body as HTML (Zendesk `html_body`). docs/destinations/<vendor>.md, "Outbound messages
and echo marker", says what each vendor keeps. The same marker is what a connector looks for
before writing, where the vendor takes no idempotency key for a comment.
"""

from __future__ import annotations

import html
import re

from chalicelib.domain.models import DeliveryJob

#: A hub id: a short lowercase type prefix, `_`, then letters and digits (ULID body).
_ID = r"[a-z]{1,8}_[0-9A-Za-z]{1,64}"
_TOKEN = re.compile(rf"hub:({_ID})(?![0-9A-Za-z])")
_ID_ONLY = re.compile(rf"^{_ID}$")


def marker(contact_id: str) -> str:
    """The marker line for an outbound contact. Raises ValueError for an id that is not a hub id
    (the marker must stay recognisable)."""
    if not _ID_ONLY.match(contact_id):
        raise ValueError(f"contact id {contact_id!r} is not a hub id (like ct_01JD…)")
    return f"[hub:{contact_id}]"


def marked_contact(text: str | None) -> str | None:
    """The outbound contact id a comment body carries (the last marker in it), or None: a comment
    without one is not the hub's echo."""
    found = _TOKEN.findall(html.unescape(text or ""))
    return found[-1] if found else None


def carries(text: str | None, contact_id: str) -> bool:
    """Whether `text` is the comment the hub wrote for this outbound contact."""
    return contact_id in _TOKEN.findall(html.unescape(text or ""))


def outbound_lines(job: DeliveryJob) -> list[str]:
    """The public comment for an outbound message, as lines: what the customer was sent (text,
    else the template's name; attachments by name and URL), then the channel it went out on and
    the marker. Never empty."""
    contact = job.contact
    lines = [contact.text] if contact.text else [_template_line(contact.metadata)]
    for attachment in contact.attachments:
        label = attachment.filename or attachment.content_type or "file"
        lines.append(f"Attachment: {label} {attachment.url or ''}".rstrip())
    lines += ["", f"Sent to the customer on {contact.channel.value} by the hub {marker(contact.id)}"]
    return lines


def outbound_text(job: DeliveryJob) -> str:
    return "\n".join(outbound_lines(job))


def outbound_html(job: DeliveryJob, *, limit: int | None = None) -> str:
    """The same comment for vendors whose bodies are HTML: the lines escaped, breaks kept. With
    `limit` (characters), the message text is shortened to fit, never the marker line."""
    rendered = _html(outbound_lines(job))
    text = job.contact.text or ""
    if limit is None or len(rendered) <= limit or not text:
        return rendered

    def with_text(characters: int) -> str:
        shortened = job.contact.model_copy(update={"text": text[:characters] + "…"})
        return _html(outbound_lines(job.model_copy(update={"contact": shortened})))

    # Escaping makes characters count differently: search for the longest text that fits.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(with_text(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return with_text(low)


def _html(lines: list[str]) -> str:
    return "<div>" + "<br>".join(html.escape(line) for line in lines) + "</div>"


def _template_line(metadata: dict) -> str:
    template = metadata.get("template")
    name = template.get("name") if isinstance(template, dict) else template
    return f"(template message {name})" if isinstance(name, str) and name else "(message without text)"
