"""The internal note an agent gets on the ticket when their reply did not reach the customer.

Written in the agent's terms: what was not delivered, why (the hub's refusal or the provider's
error, with its code), and what the agent can do about it. Never the customer's address.
"""

from __future__ import annotations

from chalicelib.domain.models import Contact, OutboundStatus

#: How much of the agent's reply the note quotes, so the agent knows which reply it was.
QUOTE_CHARS = 200

#: What the agent can do, by the hub's refusal code.
_ADVICE = {
    "consent_refused": "The customer has not agreed to messages on this channel; answer on another channel "
                       "the customer uses, or ask them to opt back in.",
    "outside_service_window": "The customer has not written on this channel recently enough for a free-form "
                              "answer; send an approved template, or wait for the customer to write again.",
    "template_required": "A conversation the business starts on this channel needs an approved template.",
    "no_reachable_channel": "The hub knows no channel it can answer this customer on.",
    "invalid_message": "The channel cannot carry this reply as written (too long, or an attachment it refuses).",
}


def failure_note(contact: Contact) -> str:
    """The note for an outbound contact that failed (status `failed`)."""
    code, reason = _failure(contact)
    return _note(f"Not delivered to the customer on {contact.channel.value}", code, reason, contact.text, contact.id)


def refusal_note(code: str, reason: str, text: str | None, message_id: str) -> str:
    """The note for a reply the hub refused before it had a conversation to send it on."""
    return _note("Not delivered to the customer", code, reason, text, message_id)


def _note(headline: str, code: str | None, reason: str, text: str | None, message_id: str) -> str:
    lines = [f"{headline}: {reason}" + (f" ({code})" if code and code not in reason else "")]
    advice = _ADVICE.get(code or "")
    if advice:
        lines.append(advice)
    if text:
        quoted = text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"
        lines += ["", f"Your reply: {quoted}"]
    lines += ["", f"Hub message {message_id}"]
    return "\n".join(lines)


def _failure(contact: Contact) -> tuple[str | None, str]:
    refusal = contact.metadata.get("refusal")
    if isinstance(refusal, dict):
        return refusal.get("code"), str(refusal.get("message") or refusal.get("code") or "refused by the hub")
    failed = [change for change in contact.status_history if change.status == OutboundStatus.FAILED]
    if failed:
        last = failed[-1]
        return last.code, last.reason or f"the provider reported it failed{f' with code {last.code}' if last.code else ''}"
    return None, "it was not sent"
