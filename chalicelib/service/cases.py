"""Case attachment: which open concern of the customer a message belongs to.

The spine's rule is simple: a customer has at most one open case and every new contact joins it.
The identity-and-cases capability replaces `attach_to_case` with windows and thread keys.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Case, CaseSummary, Channel, Customer


def attach_to_case(customer: Customer, channel: Channel, *, now: datetime) -> Case:
    """The customer's open case with this contact counted in, or a new case."""
    summary = customer.open_case
    if summary is None:
        return Case(
            id=new_id("case"), customer_id=customer.id, opened_at=now, last_activity_at=now,
            contact_count=1, channels=[channel],
        )
    return Case(
        **summary.model_dump(exclude={"last_activity_at", "contact_count", "channels"}),
        customer_id=customer.id,
        last_activity_at=max(summary.last_activity_at, now),
        contact_count=summary.contact_count + 1,
        channels=summary.channels if channel in summary.channels else [*summary.channels, channel],
    )


def summarize(case: Case) -> CaseSummary:
    return CaseSummary(**{name: getattr(case, name) for name in CaseSummary.model_fields})
