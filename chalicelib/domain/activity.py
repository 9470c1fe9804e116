"""A customer's recent contact activity: what repeat-contact rules and the contact history read.

Kept on the customer record, updated in the same write as each contact, so routing never needs
to read the timeline. Pure.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from chalicelib.domain.models import Channel, ContactActivity

#: The most recent contacts kept with their times: enough for any "N contacts within T" rule a
#: person would write (N ≤ 20).
RECENT_LIMIT = 20
#: Days of per-channel daily counts (the 30-day history plus today's partial day).
DAILY_DAYS = 31


def record_contact(activity: ContactActivity, channel: Channel, at: datetime) -> ContactActivity:
    """The activity with one more contact at `at`."""
    recent = sorted([*activity.recent, (at, channel)], key=lambda entry: entry[0], reverse=True)[:RECENT_LIMIT]
    day = at.date().isoformat()
    daily = {d: dict(counts) for d, counts in activity.daily.items() if d >= _oldest_day(at)}
    daily.setdefault(day, {})
    daily[day][channel] = daily[day].get(channel, 0) + 1
    return ContactActivity(recent=recent, daily=daily)


def combine(first: ContactActivity, second: ContactActivity) -> ContactActivity:
    """Both customers' activity as one person's (a merge)."""
    recent = sorted([*first.recent, *second.recent], key=lambda entry: entry[0], reverse=True)[:RECENT_LIMIT]
    daily: dict[str, dict[Channel, int]] = {}
    for activity in (first, second):
        for day, counts in activity.daily.items():
            merged = daily.setdefault(day, {})
            for channel, count in counts.items():
                merged[channel] = merged.get(channel, 0) + count
    return ContactActivity(recent=recent, daily=daily)


def contacts_within(activity: ContactActivity, now: datetime, hours: float) -> int:
    """Contacts (this one included, once recorded) in the `hours` before `now`; at most RECENT_LIMIT."""
    since = now - timedelta(hours=hours)
    return sum(1 for at, _ in activity.recent if since <= at <= now)


def counts_by_channel(activity: ContactActivity, now: datetime, days: int) -> dict[str, int]:
    """Contacts per channel on the last `days` UTC days, today included."""
    first_day = (now - timedelta(days=days - 1)).date().isoformat()
    totals: Counter = Counter()
    for day, counts in activity.daily.items():
        if day >= first_day:
            totals.update({channel.value: count for channel, count in counts.items()})
    return dict(sorted(totals.items()))


def _oldest_day(at: datetime) -> str:
    return (at - timedelta(days=DAILY_DAYS - 1)).date().isoformat()
