"""R1 / PERFORMANCE 4: the lifetime of the inbound dedupe record.

WhatsApp retries a webhook for up to 7 days, so the record that makes a redelivered message a
duplicate must outlive that. This reads `expires_at` (the TTL attribute, epoch seconds) of the
DEDUPE item the DynamoDB store wrote for each message processed by the `aws_calls` scenario (moto)
and reports the shortest lifetime, measured from the moment its message was processed.
"""

from __future__ import annotations

from bench.aws_calls import cached_scenario
from bench.common import Result

NAME = "dedupe_ttl"
MIN_DAYS = 7.0


def run() -> list[Result]:
    items = cached_scenario().dedupe_items
    if not items:
        return [Result("R1 dedupe record lifetime", "no DEDUPE item found", None, None, f">= {MIN_DAYS:g} days",
                       False)]
    lifetimes = []
    states = set()
    for item, processed_at in items:
        states.add(item.get("state", {}).get("S"))
        if "expires_at" not in item:
            return [Result("R1 dedupe record lifetime", "no expires_at on a DEDUPE item", None, None,
                           f">= {MIN_DAYS:g} days", False)]
        lifetimes.append((int(item["expires_at"]["N"]) - processed_at) / 86400)
    shortest = min(lifetimes)
    return [Result(
        "R1 dedupe record lifetime (expires_at - processed at)", round(shortest, 2), MIN_DAYS, shortest / MIN_DAYS,
        f">= {MIN_DAYS:g} days", shortest >= MIN_DAYS, "days",
        note=f"{len(items)} DEDUPE items read, states {sorted(s or '?' for s in states)}, "
             f"longest {max(lifetimes):.2f} days",
    )]
