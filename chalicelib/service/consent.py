"""Consent and service windows on the inbound side: recognising opt-out keywords, recording
consent statements, and reading the customer service windows the send path enforces.

    consent:
      channels: [sms, mms, whatsapp]      # where keywords apply (never email)
      keywords:
        opt_out: [STOPP, ABMELDEN]        # added to STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT
        opt_in: [ANMELDEN]                # added to START, UNSTOP, YES
        help: [HILFE]                     # added to HELP, INFO
      help_text:
        de: "Kundenservice der Beispiel GmbH. Abmelden: STOP."
        en: "Example Ltd customer service. Reply STOP to unsubscribe."

A keyword is recognised when it is the whole message (trimmed, any case, trailing punctuation
ignored), as carriers and Twilio do: "stop!" is a keyword, "please stop calling" is a message.
A provider that recognised a keyword itself (Twilio Advanced Opt-Out: `metadata.opt_out_type`)
is believed on any channel. The message stays a contact, tagged `opt_out`/`opt_in`/`help`, with
the decision in `enrichment.consent`.

The ledger's rules (which purpose a keyword changes, what `allows` lets through) are in
`domain/consent.py`; docs/consent.md explains both for operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.domain import consent as ledger
from chalicelib.domain.models import Channel, Contact, Customer, ReplyIntent, ReplyTarget, reply_key
from chalicelib.service.consent_settings import (  # noqa: F401 (re-exported)
    STANDARD_HELP,
    STANDARD_OPT_IN,
    STANDARD_OPT_OUT,
    Action,
    ConsentKeywords,
    ConsentSettings,
    fold_keyword,
)

#: The provider's own verdict (`InboundMessage.metadata["opt_out_type"]`, lower-case).
PROVIDER_TYPES: dict[str, Action] = {"stop": "opt_out", "start": "opt_in", "help": "help"}
#: Tags a keyword message gets on `routing.tags`, and the reply rule HELP answers with.
TAGS: dict[Action, str] = {"opt_out": "opt_out", "opt_in": "opt_in", "help": "help"}
HELP_RULE = "consent:help"


@dataclass(frozen=True)
class Recognized:
    action: Action
    #: `keyword:STOP` or `provider:<provider>_opt_out`: the ledger's source.
    source: str
    #: The keyword as the customer wrote it (trimmed), or the provider's type.
    keyword: str


def recognize(contact: Contact, settings: ConsentSettings) -> Recognized | None:
    """The consent keyword a contact is, if any: the provider's own verdict first, then the whole
    message against the keyword lists (on the configured channels only)."""
    verdict = contact.metadata.get("opt_out_type")
    if isinstance(verdict, str) and verdict.lower() in PROVIDER_TYPES:
        action = PROVIDER_TYPES[verdict.lower()]
        return Recognized(action, f"provider:{contact.provider}_{action}", verdict.lower())
    if contact.channel not in settings.channels or not contact.text:
        return None
    word = fold_keyword(contact.text)
    for action, words in settings._vocabulary.items():
        if word in words:
            return Recognized(action, f"keyword:{word.upper()}", contact.text.strip()[:40])
    return None


@dataclass(frozen=True)
class InboundConsent:
    """What a keyword message changes: the customer's ledger, the contact's tags, replies and
    the decision recorded on the contact (`enrichment.consent`)."""

    consent: dict
    #: None when nothing changed (an opt-in keyword on a channel that was not opted out).
    tag: str | None
    decision: dict[str, Any]
    reply: ReplyIntent | None = None


def inbound_consent(
    contact: Contact, customer: Customer, settings: ConsentSettings, *, default_language: str,
) -> InboundConsent | None:
    """The consent effect of an inbound contact; None when it is no keyword. Pure.

    STOP (and its kin) opts the contact's consent channel out for both purposes; START opts back
    in to `opt_in_purposes` when the channel was opted out (a "yes" answering an agent's question
    changes nothing), or always when the provider itself reported the opt-in; HELP answers with
    `help_text` in the contact's language."""
    found = recognize(contact, settings)
    if found is None:
        return None
    channel = ledger.consent_channel(contact.channel)
    at = contact.sent_at or contact.received_at
    decision: dict[str, Any] = {"action": found.action, "keyword": found.keyword, "source": found.source,
                                "channel": channel}
    consent = customer.consent
    if found.action == "help":
        reply = _help_reply(contact, customer, settings, default_language)
        decision["reply"] = reply.language if reply is not None else None
        if reply is None:
            decision["reason"] = "no consent.help_text configured" if not settings.help_text else "provider answered"
        return InboundConsent(consent, TAGS["help"], decision, reply)
    if found.action == "opt_in" and not found.source.startswith("provider:") \
            and ledger.state_of(consent, channel, "service") != ledger.OPTED_OUT:
        decision |= {"purposes": [], "reason": "the channel was not opted out"}
        return InboundConsent(consent, None, decision)
    if found.action == "opt_out":
        state, purposes = ledger.OPTED_OUT, list(ledger.PURPOSES)
        consent = ledger.opt_out(consent, channel, source=found.source, evidence=contact.id, at=at,
                                 limit=settings.history_limit)
    else:
        state, purposes = ledger.OPTED_IN, list(settings.opt_in_purposes)
        for purpose in purposes:
            consent = ledger.record(consent, channel, purpose, state, found.source, contact.id, at,
                                    limit=settings.history_limit)
    decision |= {"purposes": purposes, "state": state}
    return InboundConsent(consent, TAGS[found.action], decision)


def _help_reply(contact: Contact, customer: Customer, settings: ConsentSettings,
                default_language: str) -> ReplyIntent | None:
    texts = settings.help_text
    # A provider that reports HELP itself (Twilio Advanced Opt-Out) has already answered it.
    if not texts or contact.metadata.get("opt_out_type"):
        return None
    stated = customer.attributes.get("language")
    candidates = ((contact.enrichment.get("language") or {}).get("code"),
                  stated.value if stated is not None else None, default_language)
    language = next((code for code in candidates if code in texts), next(iter(texts)))
    return ReplyIntent(rule=HELP_RULE, template=HELP_RULE, language=language, text=texts[language])


# --- statements through the API ----------------------------------------------------------------


class ConsentStatement(BaseModel):
    """One entry of `PUT /v1/customers/{id}/consent`."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    purpose: ledger.Purpose
    state: ledger.ConsentState
    #: The caller's proof (a signed form's id, a double opt-in confirmation).
    evidence: str | None = Field(default=None, max_length=500)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return ledger.consent_channel(value)


def parse_statements(body: Any) -> list[ConsentStatement]:
    """One statement or a list of them. Raises `ValueError` whose text begins with the field
    path (`[1].state: ...`), for the API to answer 422 naming it."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > 50:
        raise ValueError("body: one statement, or a list of 1 to 50")
    statements = []
    for index, item in enumerate(items):
        prefix = f"[{index}]." if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise ValueError(f"{prefix.rstrip('.') or 'body'}: must be an object with channel, purpose, state")
        try:
            statements.append(ConsentStatement.model_validate(item))
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            field = ".".join(str(part) for part in error["loc"]) or "body"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field; known: channel, purpose, state, evidence"
            raise ValueError(f"{prefix}{field}: {message}") from None
    return statements


def apply_statements(customer: Customer, statements: list[ConsentStatement], *, source: str,
                     evidence: str | None, at: datetime, limit: int) -> dict:
    """The customer's ledger with the statements recorded (`evidence`: the API call's, for
    statements that bring none)."""
    consent = customer.consent
    for statement in statements:
        consent = ledger.record(consent, statement.channel, statement.purpose, statement.state, source,
                                statement.evidence or evidence, at, limit=limit)
    return consent


# --- customer service windows ----------------------------------------------------------------


class WindowState(NamedTuple):
    open: bool
    opened_at: datetime | None
    closes_at: datetime | None


def window_state(customer: Customer, channel: Channel, provider: str, account: str, now: datetime) -> WindowState:
    """Whether free text may go to the customer on `channel` through `provider` from `account`
    now: inside the window opened by their latest message there (WhatsApp, Messenger, Instagram:
    24 hours from the provider's timestamp). Channels without a window are always open; a
    windowed channel they never wrote on is closed. Compare as a tuple: `(open, opened_at,
    closes_at)`."""
    from chalicelib.adapters.channels.sending import window_closes, window_hours

    if window_hours(channel) is None:
        return WindowState(True, None, None)
    target = customer.reply_targets.get(reply_key(channel, provider, account))
    if target is None:
        return WindowState(False, None, None)
    closes = window_closes(target.at, channel)
    return WindowState(now < closes, target.at, closes)


def service_windows(customer: Customer, now: datetime) -> list[dict]:
    """Every window the customer opened (per channel, provider and account), for the API."""
    from chalicelib.adapters.channels.sending import window_hours

    windows = []
    for target in sorted(customer.reply_targets.values(), key=lambda t: t.key):
        if window_hours(target.channel) is None:
            continue
        state = window_state(customer, target.channel, target.provider, target.account, now)
        windows.append({
            "channel": target.channel.value, "provider": target.provider, "account": target.account,
            "opened_at": _iso(state.opened_at), "closes_at": _iso(state.closes_at), "open": state.open,
        })
    return windows


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


# --- reply targets ---------------------------------------------------------------------------


def remember_reply_target(customer: Customer, target: ReplyTarget | None) -> Customer:
    """The customer with `target` as the way to answer on its channel, provider and account,
    unless a newer message there is already remembered (by the provider's timestamp)."""
    if target is None:
        return customer
    current = customer.reply_targets.get(target.key)
    if current is not None and current.at > target.at:
        return customer
    return customer.model_copy(update={"reply_targets": {**customer.reply_targets, target.key: target}})


def last_inbound(customer: Customer, case_id: str, known: ReplyTarget | None) -> ReplyTarget | None:
    """The case's latest inbound message: the newest of what the case holds and the customer's
    reply targets in that case. The worker rebuilds the open case from the customer's summary,
    which does not carry it, so the customer's targets are where it survives."""
    candidates = [t for t in customer.reply_targets.values() if t.case_id == case_id]
    if known is not None:
        candidates.append(known)
    return max(candidates, key=lambda t: t.at, default=None)
