"""Enrichment: what the hub adds to a contact before routing, stored on the contact and sent to
destinations with it (`contact.enrichment`).

- `language`: the detected language ({code, confidence, source}); the customer's `language`
  attribute stands in when the text is too short to tell;
- `intent`: intents and urgency from the per-language lexicons, with the matched terms;
- `sentiment`: from Amazon Comprehend, only when enabled;
- `history`: contacts per channel in the last 7 and 30 days, the previous contact and the open case;
- `profile`: the golden-record fields destinations most often map (name, language, tier...).

Each part is computed by a port so a destination's needs and a team's language set can change
without touching the pipeline; detectors load their models on first use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from chalicelib.domain import activity
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Case, Contact, Customer
from chalicelib.enrichment.comprehend import TextAnalyzer
from chalicelib.enrichment.language import LanguageDetector

#: Golden-record attributes copied into the profile snapshot when present.
PROFILE_ATTRIBUTES = ("name", "language", "tier", "segment", "preferred_channel")


@dataclass
class Enricher:
    language: LanguageDetector | None
    #: `chalicelib.routing.lexicon.Lexicon` (duck-typed: `analyze(text, subject, language)`).
    lexicon: Any
    analyzer: TextAnalyzer | None = None

    def enrich(self, contact: Contact, customer: Customer, case: Case | None, *, now: datetime) -> dict[str, Any]:
        """The enrichment of `contact` (its existing entries, such as data-quality findings, kept)."""
        enrichment = dict(contact.enrichment)
        text = " ".join(part for part in (contact.subject, contact.text) if part)
        language = self._language(text, customer)
        enrichment["language"] = language
        match = self.lexicon.analyze(contact.text, contact.subject, language.get("code"))
        enrichment["intent"] = {
            "intents": list(match.intents), "urgent": match.urgent,
            "terms": {name: list(terms) for name, terms in match.terms.items()},
        }
        if self.analyzer is not None:
            analysis = self.analyzer.analyze(text, language.get("code"))
            if analysis is not None:
                enrichment["sentiment"] = _analysis(analysis)
        enrichment["history"] = history(customer, case, now=now, exclude=contact.received_at)
        enrichment["profile"] = profile(customer)
        return enrichment

    def _language(self, text: str, customer: Customer) -> dict[str, Any]:
        guess = self.language.detect(text) if self.language is not None and text else None
        if guess is not None:
            return {"code": guess.code, "confidence": round(guess.confidence, 3), "source": guess.source}
        stated = customer.attributes.get("language")
        if stated is not None and isinstance(stated.value, str):
            return {"code": stated.value, "confidence": None, "source": f"customer attribute ({stated.source})"}
        return {"code": None, "confidence": None, "source": None}


def history(customer: Customer, case: Case | None, *, now: datetime, exclude: datetime) -> dict[str, Any]:
    """Contact history as of `now`; `exclude` is this contact's arrival (it is not its own
    previous contact, though the counts include it)."""
    previous = next(((at, channel) for at, channel in customer.activity.recent if at < exclude), None)
    return {
        "last_7_days": activity.counts_by_channel(customer.activity, now, 7),
        "last_30_days": activity.counts_by_channel(customer.activity, now, 30),
        "previous_contact": {"at": _iso(previous[0]), "channel": previous[1].value} if previous else None,
        "open_case": {
            "id": case.id, "opened_at": _iso(case.opened_at), "contact_count": case.contact_count,
            "age_hours": round((now - case.opened_at).total_seconds() / 3600, 2),
        } if case is not None else None,
    }


def profile(customer: Customer) -> dict[str, Any]:
    """The golden-record fields destinations need to map a contact to their own records."""
    snapshot: dict[str, Any] = {"customer_id": customer.id}
    for name in PROFILE_ATTRIBUTES:
        if name in customer.attributes:
            snapshot[name] = customer.attributes[name].value
    for kind, field in ((IdentifierKind.EMAIL, "email"), (IdentifierKind.PHONE, "phone"),
                        (IdentifierKind.EXTERNAL, "external_id")):
        value = next((i.value for i in customer.identifiers if i.kind is kind), None)
        if value is not None:
            snapshot[field] = value
    custom = {name: value.value for name, value in customer.attributes.items() if name.startswith("custom.")}
    if custom:
        snapshot["custom"] = custom
    return snapshot


def _analysis(analysis) -> dict[str, Any]:
    data = asdict(analysis)
    return {key: value for key, value in data.items() if value is not None}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
