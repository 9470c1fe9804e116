"""Business hours per time zone, with holidays: "is the team there now, and if not, when?"

Opening hours are wall-clock rules ("Mon-Fri 08:00-18:00 in Berlin"), so every question is answered
on the calendar's local clock and local date; UTC appears only at the edges. A `Calendar` is
compiled once from its `CalendarSettings` into per-weekday minute bitmasks, so `is_open` costs one
time-zone conversion and a few integer operations: routing asks it for every contact.

Holidays close their whole local date. An overnight range belongs to the day it starts on: on a
holiday it does not run at all (not even its part after midnight), and the range of the day
before a holiday is cut at midnight. Whoever works the night from the 23rd into the 24th of
December stops at midnight; nobody starts a night shift on the 24th.
"""

import math
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.policies import Strict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
#: `next_opening` looks this far ahead; a team closed for longer is "not coming back" to routing.
LOOKAHEAD = timedelta(days=366)
#: Real time zones never change their UTC offset twice within a week, so an offset that is the
#: same at both ends of a week-long step held throughout it.
_OFFSET_STABLE = timedelta(days=7)
_ONE_DAY = timedelta(days=1)

_RANGE = re.compile(r"(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)")
_FULL_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_MONTH_DAY = re.compile(r"(\d\d)-(\d\d)")


def parse_range(text: str) -> tuple[int, int]:
    """`"08:00-12:30"` → (480, 750) in minutes of the day. The end is 1..1440 and is smaller than
    the start for a range that crosses midnight (`"22:00-02:00"` → (1320, 120))."""
    match = _RANGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"{text!r} is not a valid time range (00:00 to 24:00)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == end % _MINUTES_PER_DAY and end != _MINUTES_PER_DAY:
        raise ValueError(f"{text!r} is empty; use 00:00-24:00 for the whole day")
    return start, end if end else _MINUTES_PER_DAY


def expand_weekdays(key: str) -> list[int]:
    """`"mon"` → [0]; `"mon-fri"` → [0..4]; a range may wrap the week end (`"fri-mon"`)."""
    first, sep, last = key.strip().lower().partition("-")
    if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
        raise ValueError(f"{key!r} is not a weekday or weekday range (mon..sun, e.g. mon-fri)")
    if not sep:
        return [WEEKDAYS.index(first)]
    start, end = WEEKDAYS.index(first), WEEKDAYS.index(last)
    if start == end:
        raise ValueError(f"{key!r} starts and ends on the same day; write {first!r}")
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _range_list(value: Any) -> list[str]:
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not entries:
        raise ValueError('must be a range like "08:00-18:00" or a non-empty list of them')
    normalized = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f'{entry!r} is not a range like "08:00-18:00"')
        start, end = parse_range(entry)
        normalized.append(f"{_clock(start)}-{_clock(end)}")
    return normalized


def _holiday(value: Any) -> str:
    # Unquoted YAML dates (`- 2026-12-24`) arrive as `date` objects.
    if isinstance(value, datetime):
        raise ValueError(f"{value} is a date and time; holidays are whole days (YYYY-MM-DD or MM-DD)")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if _FULL_DATE.fullmatch(text):
                return date.fromisoformat(text).isoformat()
            if match := _MONTH_DAY.fullmatch(text):
                date(2000, int(match[1]), int(match[2]))  # a leap year, so 02-29 is allowed
                return text
        except ValueError:
            raise ValueError(f"{value!r} is not a calendar date") from None
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD, or MM-DD for every year)")


class CalendarSettings(Strict):
    """One calendar as configured; every validation error names the key and value at fault."""

    #: IANA time zone name, e.g. Europe/Berlin. The hours below are wall-clock times there.
    timezone: str
    #: Weekday (`mon`) or weekday range (`mon-fri`) → `"HH:MM-HH:MM"` or a list of them. A range
    #: may cross midnight (`"22:00-02:00"`); `"00:00-24:00"` is the whole day. Days not listed
    #: are closed.
    hours: dict[str, Annotated[list[str], BeforeValidator(_range_list)]] = Field(default_factory=dict)
    #: Closed local dates: `YYYY-MM-DD` once, or `MM-DD` every year.
    holidays: list[Annotated[str, BeforeValidator(_holiday)]] = Field(default_factory=empty_list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("hours")
    @classmethod
    def _each_day_once_without_overlaps(cls, hours: dict[str, list[str]]) -> dict[str, list[str]]:
        owner: dict[int, str] = {}
        intervals = []
        for key, ranges in hours.items():
            for weekday in expand_weekdays(key):
                if weekday in owner:
                    raise ValueError(f"{WEEKDAYS[weekday]} appears in both {owner[weekday]!r} and {key!r}")
                owner[weekday] = key
                for text in ranges:
                    start, end = parse_range(text)
                    begin = weekday * _MINUTES_PER_DAY + start
                    finish = begin + (end - start if end > start else end - start + _MINUTES_PER_DAY)
                    label = f"{WEEKDAYS[weekday]} {text}"
                    # On a circular week: Sunday's overnight range continues on Monday.
                    intervals.append((begin, min(finish, _MINUTES_PER_WEEK), label))
                    if finish > _MINUTES_PER_WEEK:
                        intervals.append((0, finish - _MINUTES_PER_WEEK, label))
        intervals.sort()
        for (_, end, label), (next_start, _, next_label) in zip(intervals, intervals[1:]):
            if next_start < end:
                raise ValueError(f"{label} overlaps {next_label}")
        return hours


class Calendar:
    """A compiled calendar. `at` arguments must be timezone-aware (any zone); naive datetimes
    raise `ValueError`, because guessing their zone is how business hours go wrong by an hour."""

    def __init__(self, settings: CalendarSettings) -> None:
        self.settings = settings
        self._zone = ZoneInfo(settings.timezone)
        # Per weekday: (start, stop, text) pieces that start that day, and pieces carried over
        # from the previous day's overnight ranges; the same as bitmasks for `is_open`.
        own: list[list[tuple[int, int, str]]] = [[] for _ in WEEKDAYS]
        carried: list[list[tuple[int, int, str]]] = [[] for _ in WEEKDAYS]
        for key, ranges in settings.hours.items():
            for weekday in expand_weekdays(key):
                for text in ranges:
                    start, end = parse_range(text)
                    if end > start:
                        own[weekday].append((start, end, text))
                    else:
                        own[weekday].append((start, _MINUTES_PER_DAY, text))
                        carried[(weekday + 1) % 7].append((0, end, text))
        self._own = tuple(tuple(sorted(pieces)) for pieces in own)
        self._carried = tuple(tuple(pieces) for pieces in carried)
        self._own_mask = tuple(_mask(pieces) for pieces in self._own)
        self._carried_mask = tuple(_mask(pieces) for pieces in self._carried)
        self._holiday_dates = frozenset(date.fromisoformat(h).toordinal() for h in settings.holidays if len(h) == 10)
        self._annual_holidays = frozenset(
            int(h[:2]) * 100 + int(h[3:]) for h in settings.holidays if len(h) == 5
        )

    @property
    def timezone(self) -> ZoneInfo:
        """The calendar's zone: where its hours are wall-clock times (and replies name them)."""
        return self._zone

    def is_open(self, at: datetime) -> bool:
        local = self._local(at)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if self._is_holiday(local):
            return False
        if self._own_mask[weekday] >> minute & 1:
            return True
        return bool(self._carried_mask[weekday] >> minute & 1) and not self._is_holiday(local - _ONE_DAY)

    def explain(self, at: datetime) -> str:
        """One line for a routing trace: open or closed, the local time, and the rule that decided."""
        local = self._local(at)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        zone = self.settings.timezone
        when = f"{_DAY_NAMES[weekday]} {local:%H:%M} {zone}"
        if self._is_holiday(local):
            return f"closed: holiday {local.date().isoformat()} ({zone})"
        for start, stop, text in self._own[weekday]:
            if start <= minute < stop:
                return f"open: {when} within {text}"
        previous = _DAY_NAMES[weekday - 1]
        for start, stop, text in self._carried[weekday]:
            if start <= minute < stop:
                if self._is_holiday(local - _ONE_DAY):
                    day_before = (local - _ONE_DAY).date().isoformat()
                    return f"closed: {when}: {previous} {text} started on holiday {day_before}"
                return f"open: {when} within {text} (from {previous})"
        ranges = [f"{text} (from {previous})" for _, _, text in self._carried[weekday]]
        ranges += [text for _, _, text in self._own[weekday]]
        if not ranges:
            return f"closed: {when}, no hours on {_DAY_NAMES[weekday]}"
        return f"closed: {when} is outside {', '.join(ranges)}"

    def next_opening(self, at: datetime) -> datetime | None:
        """The earliest moment at or after `at` when the calendar is open, in UTC: `at` itself when
        it is open now, None when it does not open within `LOOKAHEAD`.

        Openings are found on the wall clock and converted with the UTC offset in force; where the
        offset changes first (a DST switch), the search restarts from that instant, so a clock
        jumping into open hours opens at the jump and repeated wall-clock hours are honoured."""
        moment = self._local(at).astimezone(timezone.utc)
        horizon = moment + LOOKAHEAD
        if not any(self._own_mask):
            return None
        while moment <= horizon:
            if self.is_open(moment):
                return moment
            local = moment.astimezone(self._zone)
            wall = self._next_open_wall_time(local)
            if wall is None:
                return None
            offset = local.utcoffset()
            candidate = (wall - offset).replace(tzinfo=timezone.utc)
            step_end = min(candidate, moment + _OFFSET_STABLE)
            if step_end.astimezone(self._zone).utcoffset() != offset:
                moment = self._offset_change(moment, step_end, offset)
            elif step_end == candidate:
                return candidate if candidate <= horizon else None
            else:
                moment = step_end
        return None

    def _next_open_wall_time(self, local: datetime) -> datetime | None:
        """The first local wall-clock minute after `local`'s minute that the rules open, naive."""
        today = local.date()
        after = local.hour * 60 + local.minute + 1
        for days in range(LOOKAHEAD.days + 2):
            day = today + timedelta(days=days)
            minute = self._first_open_minute(day, after if days == 0 else 0)
            if minute is not None:
                return datetime.combine(day, time()) + timedelta(minutes=minute)
        return None

    def _first_open_minute(self, day: date, after: int) -> int | None:
        if self._is_holiday(day):
            return None
        weekday = day.weekday()
        pieces = list(self._own[weekday])
        if not self._is_holiday(day - _ONE_DAY):
            pieces += self._carried[weekday]
        starts = [max(start, after) for start, stop, _ in pieces if stop > after]
        return min(starts, default=None)

    def _offset_change(self, start: datetime, end: datetime, offset: timedelta) -> datetime:
        """The first whole second in (start, end] whose UTC offset differs from `offset`
        (transitions fall on whole seconds; `end`'s offset differs)."""
        low, high = math.floor(start.timestamp()), math.ceil(end.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self._zone).utcoffset() == offset:
                low = middle
            else:
                high = middle
        return datetime.fromtimestamp(high, timezone.utc)

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("calendar times must be timezone-aware")
        return at.astimezone(self._zone)

    def _is_holiday(self, day: date) -> bool:
        return day.toordinal() in self._holiday_dates or day.month * 100 + day.day in self._annual_holidays


def _mask(pieces: tuple[tuple[int, int, str], ...]) -> int:
    """Bit n set ⇔ minute n of the day is inside one of the pieces."""
    mask = 0
    for start, stop, _ in pieces:
        mask |= ((1 << (stop - start)) - 1) << start
    return mask


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
