"""Field mapping: what a vendor object is made of, from the contact, customer, case and routing.

Every vendor connector embeds `FieldMapping` in its settings (`mapping:`), so a destination can
map priorities to the vendor's scale, add tags and fill custom fields without code:

    mapping:
      priority: {urgent: urgent, high: high, normal: normal, low: low}   # hub priority → vendor value
      tags: [omnichannel]                  # sent besides the routing tags
      custom_fields:                       # vendor field (name or id) → a path into the delivery
        "360001234567": customer.attributes.tier
        hub_case_id: case.id
        language: enrichment.language.code

Paths start at `contact`, `customer`, `case`, `routing` (the contact's decision), `enrichment` or
`profile` (the enrichment's golden-record snapshot); `customer.attributes.<name>` is the
attribute's surviving value.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.domain.models import DeliveryJob

ROOTS = ("contact", "customer", "case", "routing", "enrichment", "profile")
_MISSING = object()


class FieldMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Hub priority name (low, normal, high, urgent) → the vendor's value; the connector's
    #: defaults apply to names left out.
    priority: dict[str, str | int] = Field(default_factory=dict)
    #: Tags sent besides the routing decision's tags (when `routing_tags` is on).
    tags: list[str] = Field(default_factory=list)
    routing_tags: bool = True
    #: Vendor field → path into the delivery (see the module docstring).
    custom_fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("priority")
    @classmethod
    def _priority_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - {"low", "normal", "high", "urgent"})
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a hub priority (low, normal, high, urgent)")
        return value

    @field_validator("custom_fields")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_paths(value)

    def priority_for(self, job: DeliveryJob, defaults: dict[str, Any]) -> Any:
        name = job.contact.routing.priority.name.lower()
        return self.priority.get(name, defaults.get(name))

    def tags_for(self, job: DeliveryJob) -> list[str]:
        tags = list(job.contact.routing.tags) if self.routing_tags else []
        return list(dict.fromkeys([*tags, *self.tags]))

    def custom_values(self, job: DeliveryJob) -> dict[str, Any]:
        """The custom fields whose paths have a value in this delivery."""
        view = delivery_view(job)
        values = {field: value_at(view, path) for field, path in self.custom_fields.items()}
        return {field: value for field, value in values.items() if value is not _MISSING and value is not None}


def checked_paths(fields: dict[str, str]) -> dict[str, str]:
    """`fields` (vendor field → path) when every path starts at a known root; else ValueError."""
    for field, path in fields.items():
        if path.split(".", 1)[0] not in ROOTS:
            raise ValueError(f"{field}: path {path!r} must start with one of {', '.join(ROOTS)}")
    return fields


def delivery_view(job: DeliveryJob) -> dict[str, Any]:
    """The delivery as plain data, the way mapping paths address it."""
    customer = job.customer.model_dump(mode="json")
    customer["attributes"] = {name: value.get("value") for name, value in customer.get("attributes", {}).items()}
    contact = job.contact.model_dump(mode="json", exclude={"raw", "deliveries"})
    return {
        "contact": contact, "customer": customer, "case": job.case.model_dump(mode="json"),
        "routing": contact.get("routing", {}), "enrichment": contact.get("enrichment", {}),
        "profile": contact.get("enrichment", {}).get("profile", {}),
    }


def value_at(view: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`customer.attributes.custom.tier` keeps the dotted attribute
    name together); `_MISSING` when there is none."""
    node: Any = view
    parts = path.split(".")
    index = 0
    while index < len(parts):
        if not isinstance(node, dict):
            return _MISSING
        # Attribute names may themselves contain dots (custom.tier): try the longest key first.
        for end in range(len(parts), index, -1):
            key = ".".join(parts[index:end])
            if key in node:
                node, index = node[key], end
                break
        else:
            return _MISSING
    return node


def subject_for(job: DeliveryJob, *, limit: int = 150) -> str:
    """A ticket subject: the email subject, else the start of the text, with the channel."""
    contact = job.contact
    text = contact.subject or " ".join((contact.text or "").split()) or f"{contact.content_type.value} message"
    subject = f"[{contact.channel.value}] {text}"
    return subject if len(subject) <= limit else subject[: limit - 1].rstrip() + "…"


def body_for(job: DeliveryJob) -> str:
    """A readable comment body: who wrote on which channel, the text, attachments, and how the
    hub routed it, so an agent sees everything without opening the hub."""
    contact = job.contact
    sender = contact.sender.display_name or (str(contact.sender.identifiers[0]) if contact.sender.identifiers else "")
    lines = [f"{sender} via {contact.channel.value} ({contact.provider}) at "
             f"{contact.received_at.isoformat().replace('+00:00', 'Z')}:", "", contact.text or "(no text)"]
    for attachment in contact.attachments:
        lines.append(f"Attachment: {attachment.filename or attachment.content_type or 'file'} {attachment.url or ''}".rstrip())
    if contact.location is not None:
        lines.append(f"Location: {contact.location.latitude}, {contact.location.longitude}")
    routing = contact.routing
    lines += ["", f"Hub: contact {contact.id}, case {job.case.id}, customer {job.customer.id}; "
                  f"queue {routing.queue}, priority {routing.priority.name.lower()}"
                  + (f", tags {', '.join(routing.tags)}" if routing.tags else "")]
    return "\n".join(lines)
