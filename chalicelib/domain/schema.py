"""The published JSON schemas (docs/schemas/): what destinations and API consumers receive.

`python -m chalicelib.domain.schema` rewrites them; a test fails when they drift from the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from chalicelib.domain.events import ContactEventType
from chalicelib.domain.models import Case, Contact, Customer

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


class ContactEventData(BaseModel):
    contact: Contact
    customer: Customer
    case: Case


class ContactEvent(BaseModel):
    """The body of every delivery (signed webhook, outbox line without `delivery_id`)."""

    model_config = ConfigDict(title="ContactEvent")

    #: `contact.created` for a customer's message; `message.sent` and `message.status` for the
    #: hub's own (the contact is then `direction: outbound`, with `status` and `status_history`).
    type: ContactEventType
    #: When it happened: the contact's arrival, or the outbound message's latest status change.
    timestamp: str
    data: ContactEventData


def schemas() -> dict[str, dict]:
    return {
        "contact.schema.json": Contact.model_json_schema(mode="serialization"),
        "contact-event.schema.json": ContactEvent.model_json_schema(mode="serialization"),
        "customer.schema.json": Customer.model_json_schema(mode="serialization"),
        "case.schema.json": Case.model_json_schema(mode="serialization"),
    }


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (SCHEMA_DIR / name).write_text(render(schema))
        print(f"wrote docs/schemas/{name}")
