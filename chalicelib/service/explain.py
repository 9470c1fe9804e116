"""Explain routing: what the rules decide for a contact, without storing or sending anything.

Input is a JSON object `{"contact": {...}, "customer": {...}, "case": {...}}`. The contact may
be a stored contact as `GET /v1/contacts/{id}` returns it, or just the fields a rule looks at
(`{"channel": "whatsapp", "text": "Internet Störung seit heute"}`); customer and case are
optional (without a customer, the contact counts as a new customer's). The contact is enriched
as the pipeline would (language, intents, history) except for Comprehend, which would cost a
call, and routed by the rules in force.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from chalicelib.domain.activity import record_contact
from chalicelib.domain.models import Case, Contact, Customer
from chalicelib.enrichment.enrich import Enricher
from chalicelib.errors import RequestRejectedError
from chalicelib.routing.context import context_for
from chalicelib.routing.engine import Router


def explain(body: Any, *, router: Router, enricher: Enricher, now: datetime) -> dict[str, Any]:
    """The decision (with its trace) and the enrichment it was made on. Raises
    `RequestRejectedError` naming the field that is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("contact"), dict):
        raise RequestRejectedError('body must be {"contact": {...}, "customer": {...}?, "case": {...}?}')
    customer = _model(Customer, body.get("customer") or {"id": "cus_explain", "created_at": now}, "customer")
    case = _model(Case, body["case"], "case") if body.get("case") else None
    new_customer = body.get("customer") is None
    defaults = {
        "id": "ct_explain", "provider": "explain", "provider_message_id": "explain", "account": "",
        "sender": {}, "received_at": now, "content_type": "text", "customer_id": customer.id,
        "case_id": case.id if case else "case_explain",
        "resolution": {"customer_id": customer.id, "created_customer": new_customer, "rule": "explain"},
    }
    contact = _model(Contact, {**defaults, **body["contact"]}, "contact")
    if not any(at == contact.received_at for at, _ in customer.activity.recent):
        customer = customer.model_copy(
            update={"activity": record_contact(customer.activity, contact.channel, contact.received_at)}
        )
    offline = Enricher(language=enricher.language, lexicon=enricher.lexicon, analyzer=None)
    contact.enrichment = offline.enrich(contact, customer, case, now=contact.received_at)
    decision = router.route(context_for(contact, customer, case, created_customer=contact.resolution.created_customer))
    return {"decision": decision.model_dump(mode="json"), "enrichment": contact.enrichment}


def _model(model, data: Any, name: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RequestRejectedError(f"{name}.{where}: {first['msg']}",
                                   detail={"errors": [f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                      for e in exc.errors()[:10]]}) from None


def render_trace(decision: dict[str, Any]) -> str:
    """The decision as text, one rule per line: what `hubctl route --explain` prints."""
    lines = [
        f"priority {decision['priority']}  queue {decision['queue']}  destinations "
        f"[{', '.join(decision['destinations'])}]",
    ]
    if decision.get("skills"):
        lines.append("skills " + ", ".join(f"{k}:{v}" for k, v in decision["skills"].items()))
    if decision.get("tags"):
        lines.append("tags " + ", ".join(decision["tags"]))
    for label in ("parked", "suppressed"):
        if decision.get(label):
            lines.append(f"{label}: {decision[label]}")
    for reply in decision.get("replies", []):
        lines.append(f"reply {reply['template']} ({reply['language']}): {reply['text']}")
    lines.append(f"rules {decision.get('rules_version')}:")
    for entry in decision["trace"]:
        mark = "MATCH" if entry["matched"] else "  -  "
        lines.append(f"  {mark} {entry['rule']}: {entry['reason'] or ''}")
    return "\n".join(lines)
