from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from chalicelib.routing.calendar import Calendar, CalendarSettings

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
OFFICE = """
timezone: Europe/Berlin
hours:
  mon-fri: ["08:00-12:30", "13:00-18:00"]
  sat: "09:00-13:00"
holidays: [2026-12-24, "12-25", "12-26", "01-01"]
"""


def calendar(text: str = OFFICE) -> Calendar:
    return Calendar(CalendarSettings.model_validate(yaml.safe_load(text)))


def weekly(hours: str, holidays: str = "[]") -> Calendar:
    return calendar(f"timezone: Europe/Berlin\nhours: {hours}\nholidays: {holidays}")


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        CalendarSettings.model_validate(yaml.safe_load(text))
    return [".".join(map(str, e["loc"])) + ": " + e["msg"] for e in caught.value.errors(include_url=False)]


def test_settings_normalize_single_ranges_to_lists_and_yaml_dates_to_iso_strings():
    settings = CalendarSettings.model_validate(yaml.safe_load(OFFICE))

    assert settings.hours == {"mon-fri": ["08:00-12:30", "13:00-18:00"], "sat": ["09:00-13:00"]}
    assert settings.holidays == ["2026-12-24", "12-25", "12-26", "01-01"]


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ('{mon-fri: "8-18"}', "hours.mon-fri: Value error, '8-18' is not HH:MM-HH:MM"),
        ('{mon: "08:00-25:00"}', "hours.mon: Value error, '08:00-25:00' is not a valid time range"),
        ('{mon: "08:00-08:00"}', "hours.mon: Value error, '08:00-08:00' is empty; use 00:00-24:00"),
        ('{mon: ["08:00-12:00", 13]}', "hours.mon: Value error, 13 is not a range"),
        ('{mon: []}', "hours.mon: Value error, must be a range"),
        ('{monday: "08:00-18:00"}', "hours: Value error, 'monday' is not a weekday or weekday range"),
        ('{mon-fry: "08:00-18:00"}', "hours: Value error, 'mon-fry' is not a weekday or weekday range"),
        ('{mon-fri: "08:00-18:00", mon: "19:00-20:00"}', "hours: Value error, mon appears in both 'mon-fri' and 'mon'"),
        ('{mon: ["08:00-12:30", "12:00-18:00"]}', "hours: Value error, mon 08:00-12:30 overlaps mon 12:00-18:00"),
        ('{sun: "22:00-02:00", mon: "01:00-05:00"}', "hours: Value error, sun 22:00-02:00 overlaps mon 01:00-05:00"),
    ],
)
def test_invalid_hours_are_reported_with_the_key_and_value_at_fault(hours, expected):
    found = problems(f"timezone: Europe/Berlin\nhours: {hours}")

    assert len(found) == 1 and found[0].startswith(expected), found


def test_touching_ranges_and_a_whole_day_are_valid():
    settings = CalendarSettings.model_validate(
        {"timezone": "UTC", "hours": {"mon": ["08:00-12:00", "12:00-18:00"], "sun": "00:00-24:00"}}
    )

    assert settings.hours["sun"] == ["00:00-24:00"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("timezone: Europe/Berln", "timezone: Value error, unknown time zone 'Europe/Berln'"),
        ("timezone: Europe", "timezone: Value error, unknown time zone 'Europe'"),
        ("holidays: ['12-24', '2026-02-30']", "holidays.1: Value error, '2026-02-30' is not a calendar date"),
        ("holidays: ['24.12.']", "holidays.0: Value error, '24.12.' is not a date (YYYY-MM-DD, or MM-DD"),
        ("holidays: [2026-12-24 10:00:00]", "holidays.0: Value error, 2026-12-24 10:00:00 is a date and time"),
        ("hollidays: ['12-24']", "hollidays: Extra inputs are not permitted"),
    ],
)
def test_invalid_time_zones_and_holidays_name_the_field(change, expected):
    text = "timezone: Europe/Berlin\nhours: {mon: '08:00-18:00'}\n"
    key = change.split(":")[0]
    lines = [line for line in text.splitlines() if not line.startswith(key + ":")] + [change]

    found = problems("\n".join(lines))

    assert len(found) == 1 and found[0].startswith(expected), found


def test_february_29_is_a_valid_yearly_holiday():
    assert CalendarSettings(timezone="UTC", holidays=["02-29"]).holidays == ["02-29"]


def test_open_within_a_range_and_closed_over_lunch_and_at_the_exact_end():
    office = calendar()

    assert office.is_open(berlin(2026, 3, 2, 9, 15))
    assert office.is_open(berlin(2026, 3, 2, 12, 29, 59))
    assert not office.is_open(berlin(2026, 3, 2, 12, 30))
    assert not office.is_open(berlin(2026, 3, 2, 12, 45))
    assert office.is_open(berlin(2026, 3, 2, 13, 0))
    assert not office.is_open(berlin(2026, 3, 1, 10, 0))  # Sunday


def test_the_same_instant_gets_the_same_answer_in_any_time_zone():
    office = calendar()
    instant = utc(2026, 3, 2, 7, 30)  # 08:30 in Berlin

    assert office.is_open(instant)
    assert office.is_open(instant.astimezone(ZoneInfo("America/New_York")))
    assert not office.is_open(utc(2026, 3, 2, 6, 30))


def test_naive_datetimes_are_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar().is_open(datetime(2026, 3, 2, 9, 0))


def test_explain_names_the_local_time_and_the_deciding_rule():
    office = calendar()

    assert office.explain(berlin(2026, 3, 2, 9, 15)) == "open: Mon 09:15 Europe/Berlin within 08:00-12:30"
    assert office.explain(berlin(2026, 3, 7, 14, 5)) == "closed: Sat 14:05 Europe/Berlin is outside 09:00-13:00"
    assert office.explain(berlin(2026, 3, 2, 12, 45)) == (
        "closed: Mon 12:45 Europe/Berlin is outside 08:00-12:30, 13:00-18:00"
    )
    assert office.explain(berlin(2026, 3, 8, 10, 0)) == "closed: Sun 10:00 Europe/Berlin, no hours on Sun"
    assert office.explain(utc(2026, 12, 24, 9, 0)) == "closed: holiday 2026-12-24 (Europe/Berlin)"


def test_spring_forward_shifts_the_utc_opening_by_an_hour():
    office = calendar()

    # 06:30 UTC is 07:30 CET on the Friday before the switch, 08:30 CEST on the Monday after.
    assert not office.is_open(utc(2026, 3, 27, 6, 30))
    assert office.is_open(utc(2026, 3, 30, 6, 30))
    assert office.next_opening(berlin(2026, 3, 28, 14, 5)) == utc(2026, 3, 30, 6, 0)


def test_fall_back_shifts_the_utc_opening_by_an_hour():
    office = calendar()

    assert office.is_open(utc(2026, 10, 23, 6, 30))  # 08:30 CEST
    assert not office.is_open(utc(2026, 10, 26, 6, 30))  # 07:30 CET
    assert office.next_opening(berlin(2026, 10, 24, 14, 5)) == utc(2026, 10, 26, 7, 0)


def test_opening_inside_the_skipped_hour_opens_when_the_clock_jumps():
    early = weekly('{sun: "02:30-06:00"}')

    assert not early.is_open(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert early.is_open(utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert early.next_opening(utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)


def test_a_range_inside_the_repeated_hour_is_open_on_both_passes():
    repeated = weekly('{sun: "02:00-02:30"}')

    assert repeated.is_open(utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert not repeated.is_open(utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert repeated.is_open(utc(2026, 10, 25, 1, 15))  # 02:15 CET
    assert repeated.next_opening(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 25, 1, 0)


def test_overnight_ranges_continue_after_midnight_until_their_end():
    night = weekly('{fri: "22:00-02:00"}')

    assert not night.is_open(berlin(2026, 3, 6, 21, 59))
    assert night.is_open(berlin(2026, 3, 6, 22, 0))
    assert night.is_open(berlin(2026, 3, 7, 1, 59))
    assert not night.is_open(berlin(2026, 3, 7, 2, 0))
    assert night.explain(berlin(2026, 3, 7, 1, 30)) == "open: Sat 01:30 Europe/Berlin within 22:00-02:00 (from Fri)"
    assert night.explain(berlin(2026, 3, 7, 3, 0)) == "closed: Sat 03:00 Europe/Berlin is outside 22:00-02:00 (from Fri)"


def test_overnight_range_on_sunday_continues_into_monday():
    night = weekly('{sun: "23:00-01:00"}')

    assert night.is_open(berlin(2026, 3, 9, 0, 30))
    assert not night.is_open(berlin(2026, 3, 10, 0, 30))


def test_whole_day_range_covers_the_first_and_last_minute():
    always = weekly('{mon-sun: "00:00-24:00"}')

    assert always.is_open(berlin(2026, 3, 2, 0, 0))
    assert always.is_open(berlin(2026, 3, 2, 23, 59, 59))


def test_holidays_are_evaluated_on_the_local_date_not_the_utc_date():
    always = weekly('{mon-sun: "00:00-24:00"}', holidays='["12-24"]')

    assert always.is_open(utc(2026, 12, 23, 22, 59))  # 23:59 on the 23rd in Berlin
    assert not always.is_open(utc(2026, 12, 23, 23, 0))  # 00:00 on the 24th in Berlin, still the 23rd in UTC
    assert not always.is_open(utc(2026, 12, 24, 22, 59))
    assert always.is_open(utc(2026, 12, 24, 23, 0))  # the 25th in Berlin


def test_yearly_holidays_recur_and_dated_ones_do_not():
    office = calendar()

    assert not office.is_open(berlin(2027, 1, 1, 9, 0))
    assert not office.is_open(berlin(2026, 12, 24, 9, 0))
    assert office.is_open(berlin(2027, 12, 24, 9, 0))


def test_a_holiday_cuts_the_previous_nights_range_at_midnight_and_cancels_its_own():
    nights = weekly('{mon-sun: "22:00-02:00"}', holidays='["2026-12-24"]')

    assert nights.is_open(berlin(2026, 12, 23, 23, 30))
    assert not nights.is_open(berlin(2026, 12, 24, 0, 30))  # the 23rd's range, on the holiday
    assert not nights.is_open(berlin(2026, 12, 24, 23, 0))
    assert not nights.is_open(berlin(2026, 12, 25, 1, 0))  # the holiday's range, after midnight
    assert nights.explain(berlin(2026, 12, 25, 1, 0)) == (
        "closed: Fri 01:00 Europe/Berlin: Thu 22:00-02:00 started on holiday 2026-12-24"
    )
    assert nights.is_open(berlin(2026, 12, 25, 22, 0))
    assert nights.next_opening(berlin(2026, 12, 24, 0, 30)) == berlin(2026, 12, 25, 22, 0)


def test_next_opening_skips_the_weekend_after_closing_time():
    assert calendar().next_opening(berlin(2026, 3, 6, 18, 0)) == berlin(2026, 3, 7, 9, 0)
    assert calendar().next_opening(berlin(2026, 3, 7, 13, 0)) == berlin(2026, 3, 9, 8, 0)


def test_next_opening_skips_consecutive_holidays_and_the_weekend():
    # Thu 24th, Fri 25th and Sat 26th are holidays; Sunday has no hours.
    assert calendar().next_opening(berlin(2026, 12, 23, 18, 30)) == utc(2026, 12, 28, 7, 0)


def test_next_opening_is_the_moment_itself_in_utc_while_open_and_the_next_range_over_lunch():
    office = calendar()

    assert office.next_opening(berlin(2026, 3, 2, 9, 15, 30)) == utc(2026, 3, 2, 8, 15, 30)
    assert office.next_opening(berlin(2026, 3, 2, 12, 45)).tzinfo == UTC
    assert office.next_opening(berlin(2026, 3, 2, 12, 45)) == berlin(2026, 3, 2, 13, 0)


def test_a_calendar_without_hours_never_opens():
    closed = calendar("timezone: Europe/Berlin")

    assert closed.next_opening(utc(2026, 3, 2, 9, 0)) is None
    assert not closed.is_open(utc(2026, 3, 2, 9, 0))


@pytest.mark.parametrize("start", [utc(2026, 3, 26), utc(2026, 10, 22), utc(2026, 12, 21)])
@pytest.mark.parametrize(
    "hours",
    [
        '{mon-fri: ["07:30-12:00", "13:00-20:00"], sat: "22:00-03:00", sun: "10:00-11:00"}',
        '{mon-thu: "09:00-17:00", fri: "23:30-00:30", sun: ["02:00-02:30", "02:45-04:00"]}',
    ],
)
def test_next_opening_agrees_with_a_minute_by_minute_walk_across_dst_and_holidays(hours, start):
    tricky = weekly(hours, holidays='["12-24", "12-25"]')
    minutes = [start + timedelta(minutes=i) for i in range(8 * 24 * 60)]
    expected: list[datetime | None] = [None] * len(minutes)
    upcoming = None
    for i in range(len(minutes) - 1, -1, -1):
        if tricky.is_open(minutes[i]):
            upcoming = minutes[i]
        expected[i] = upcoming

    mismatches = [
        (moment, tricky.next_opening(moment), wanted)
        for moment, wanted in zip(minutes, expected)
        if wanted is not None and tricky.next_opening(moment) != wanted
    ]

    assert not mismatches, mismatches[:3]
