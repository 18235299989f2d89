"""CronJob schedule arithmetic: what Kubernetes accepts, when a schedule is due, in which zone, across DST."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from controlplane.api.cronschedule import MISSED_LIMIT, due, expand, next_after, time_zone

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(*args: int, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=tz)  # type: ignore[misc,arg-type]


@pytest.mark.parametrize(
    ("schedule", "five"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 9-17 * * MON-FRI", "0 9-17 * * MON-FRI"),
        ("0 0 ? * SUN", "0 0 * * SUN"),
        ("  1,2,3  4 * JAN,FEB *  ", "1,2,3 4 * JAN,FEB *"),
    ],
)
def test_accepted_schedules(schedule: str, five: str) -> None:
    assert expand(schedule) == five


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ("", "required"),
        ("* * * *", "exactly 5 fields"),
        ("* * * * * *", "exactly 5 fields"),  # seconds are not Kubernetes' cron
        ("61 * * * *", "not a valid schedule"),
        ("0 0 L * *", "day of month"),  # croniter's "last day" is not in Kubernetes' parser
        ("0 0 * * 5#3", "day of week"),
        ("@every 5m", "unknown macro"),
        ("CRON_TZ=UTC 0 * * * *", "spec.timeZone"),
        ("TZ=Europe/Berlin 0 * * * *", "spec.timeZone"),
        ("0 " * 200, "256 characters"),
        ("H * * * *", "minute"),
    ],
)
def test_refused_schedules_say_why(schedule: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        expand(schedule)


def test_time_zones_are_names_not_paths() -> None:
    assert time_zone("Europe/Berlin") == BERLIN
    for bad in ("../../etc/passwd", "/etc/localtime", "Mars/Olympus", "Europe/../../x", "a" * 100):
        with pytest.raises(ValueError):
            time_zone(bad)


def test_due_counts_the_times_between_and_returns_the_latest() -> None:
    d = due("*/10 * * * *", UTC, at(2026, 1, 1, 0, 0), at(2026, 1, 1, 0, 35))
    assert d.time == at(2026, 1, 1, 0, 30) and d.count == 3 and not d.too_many_missed
    # Exactly at a due time counts it; the earliest time itself does not (it already ran).
    assert due("*/10 * * * *", UTC, at(2026, 1, 1, 0, 30), at(2026, 1, 1, 0, 40)).time == at(2026, 1, 1, 0, 40)
    assert due("*/10 * * * *", UTC, at(2026, 1, 1, 0, 30), at(2026, 1, 1, 0, 39)).time is None


def test_a_year_of_missed_minutes_is_bounded_and_still_finds_the_latest() -> None:
    d = due("* * * * *", UTC, at(2025, 1, 1, 0, 0), at(2026, 1, 1, 12, 34, 56))
    assert d.too_many_missed and d.count == MISSED_LIMIT + 1
    assert d.time == at(2026, 1, 1, 12, 34)


def test_a_schedule_that_never_matches_is_never_due() -> None:
    assert due("0 0 31 2 *", UTC, at(2026, 1, 1), at(2026, 12, 31)).time is None
    assert next_after("0 0 31 2 *", UTC, at(2026, 1, 1)) is None


def test_the_schedule_is_read_on_the_wall_clock_of_its_zone() -> None:
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    assert next_after("0 9 * * *", NEW_YORK, at(2026, 1, 10)) == at(2026, 1, 10, 14, 0)
    assert next_after("0 9 * * *", NEW_YORK, at(2026, 7, 10)) == at(2026, 7, 10, 13, 0)


def test_a_wall_clock_time_skipped_by_dst_runs_once_right_after_the_change() -> None:
    # Berlin, 2026-03-29: 02:00 local jumps to 03:00; 02:30 does not exist that day.
    start = at(2026, 3, 28, 12, 0, tz=BERLIN)
    times = []
    t = start
    for _ in range(3):
        n = next_after("30 2 * * *", BERLIN, t)
        assert n is not None
        times.append(n.astimezone(UTC))
        t = n
    assert times[0] == at(2026, 3, 29, 1, 0)  # 03:00 CEST, the first instant after the gap
    assert times[1] == at(2026, 3, 30, 0, 30)  # 02:30 CEST the next day
    assert len(set(times)) == 3


def test_an_hourly_schedule_runs_each_instant_of_a_repeated_hour() -> None:
    # Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; "@hourly" is due every real hour, no gaps.
    d = due("@hourly", BERLIN, at(2026, 10, 24, 22, 30), at(2026, 10, 25, 3, 30))
    assert d.count == 5  # 23:00, 00:00, 01:00, 02:00, 03:00 UTC: one per elapsed hour
    assert d.time == at(2026, 10, 25, 3, 0)
