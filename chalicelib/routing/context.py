"""What routing rules can see about one contact, gathered once before the rules run.

Rules are evaluated hundreds of times per contact in the worst case, so everything they read is
a plain attribute here: no model traversal, no parsing and no I/O during evaluation. The engine
also keeps its working state (priority and tags so far) here, because later rules may test what
earlier ones decided.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from chalicelib.domain.models import Case, Contact, Customer, Priority
from chalicelib.domain.values import Record

_WORD = re.compile(r"\w+")


class RoutingContext(Record):
    """Mutable working state, so a `Record` (a slotted class defined at no import cost) rather
    than a dataclass. Fields:

    * `account`: the address the customer wrote to: the number, mailbox, page or site
      (`Contact.account`).
    * `language`: detected language (ISO 639-1), None when unsure.
    * `attributes`: the golden record's surviving values, by attribute name (`tier`, `custom.segment`).
    * `now`: when the contact arrived; every time-based condition is evaluated at this moment.
    * `recent`: arrival times of the customer's recent contacts, newest first, this one included.
    * `ticket`: the case's tickets as their vendors reported them: `<destination>.<field>` → value,
      for fields `state`, `status` (the vendor's word), `assignee` and `priority`.
    * `sender_verified`: whether the channel proved the sender (`Contact.sender_verified`).
    * `priority`, `tags`: the engine's decision so far (later rules may test what earlier ones set).
    * `calendar_open`: calendar → open at `now`, filled as conditions ask (one answer per contact
      and calendar).
    * `folded_words`: text attribute → its case-folded words, computed on first use.
    * `searched`: text attribute and regular expression → whether it was found, filled as
      conditions ask (one search per contact and expression, however many rules repeat it);
      `Router.route` starts it empty.
    """

    __slots__ = ("channel", "provider", "account", "text", "subject", "content_type", "attachments", "language",
                 "intents", "urgent", "attributes", "new_customer", "now", "recent", "case_opened_at", "ticket",
                 "sender_verified", "priority", "tags", "calendar_open", "folded_words", "searched")

    def __init__(
        self, channel: str, provider: str, account: str, text: str, subject: str, content_type: str,
        attachments: int, language: str | None, intents: frozenset[str], urgent: bool, attributes: dict[str, Any],
        new_customer: bool, now: datetime, recent: list[datetime], case_opened_at: datetime | None,
        ticket: dict[str, Any] | None = None, sender_verified: bool = True, priority: Priority = Priority.NORMAL,
        tags: list[str] | None = None, calendar_open: dict[Any, bool] | None = None,
        folded_words: dict[str, frozenset[str]] | None = None, searched: dict[str, bool] | None = None,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.account = account
        self.text = text
        self.subject = subject
        self.content_type = content_type
        self.attachments = attachments
        self.language = language
        self.intents = intents
        self.urgent = urgent
        self.attributes = attributes
        self.new_customer = new_customer
        self.now = now
        self.recent = recent
        self.case_opened_at = case_opened_at
        self.ticket = {} if ticket is None else ticket
        self.sender_verified = sender_verified
        self.priority = priority
        self.tags = [] if tags is None else tags
        self.calendar_open = {} if calendar_open is None else calendar_open
        self.folded_words = {} if folded_words is None else folded_words
        self.searched = {} if searched is None else searched

    def words(self, attribute: str) -> frozenset[str]:
        """The case-folded words of `text` or `subject`: keyword conditions test membership
        instead of each scanning the text with a regular expression."""
        words = self.folded_words.get(attribute)
        if words is None:
            words = self.folded_words[attribute] = frozenset(_WORD.findall(getattr(self, attribute).casefold()))
        return words


def context_for(contact: Contact, customer: Customer, case: Case | None, *, created_customer: bool) -> RoutingContext:
    """The context of a processed contact: its enrichment, the golden record and the case."""
    enrichment = contact.enrichment
    language = (enrichment.get("language") or {}).get("code")
    intent = enrichment.get("intent") or {}
    return RoutingContext(
        channel=contact.channel.value,
        provider=contact.provider,
        account=contact.account,
        text=contact.text or "",
        subject=contact.subject or "",
        content_type=contact.content_type.value,
        attachments=len(contact.attachments),
        language=language,
        intents=frozenset(intent.get("intents") or ()),
        urgent=bool(intent.get("urgent")),
        attributes={name: value.value for name, value in customer.attributes.items()},
        new_customer=created_customer,
        sender_verified=contact.sender_verified,
        now=contact.received_at,
        recent=[at for at, _ in customer.activity.recent],
        case_opened_at=case.opened_at if case is not None else None,
        ticket=_ticket_fields(case),
    )


def _ticket_fields(case: Case | None) -> dict[str, Any]:
    if case is None:
        return {}
    fields: dict[str, Any] = {}
    for destination, state in case.external_state.items():
        for name, value in (("state", state.state), ("status", state.vendor_status), ("assignee", state.assignee),
                            ("priority", state.priority)):
            if value is not None:
                fields[f"{destination}.{name}"] = value
    return fields
