"""CronJob schedules: parsing as Kubernetes accepts them, and the times a schedule is due.

Parsing and iteration are the ``croniter`` library's; this module bounds what reaches it to what Kubernetes'
parser accepts (five fields of numbers, names, ``*``, ``?``, ranges, steps and lists, or one of the macros),
and holds the arithmetic the CronJob controller needs as pure functions:

- :func:`due` — the most recent time a schedule was due in ``(earliest, now]`` and how many times it was due
  there (counting stops at :data:`MISSED_LIMIT` + 1, so a schedule missed for a year costs 101 steps, not half
  a million), which is how Kubernetes decides to start a run and to warn about too many missed ones;
- :func:`next_after` — when to look again.

Times are computed in the schedule's time zone (``zoneinfo``), so "30 2 * * *" means 02:30 on the wall clock
of that zone. A wall-clock time skipped by a daylight-saving change runs at the first instant after the
change; a repeated hour runs each distinct instant that matches (as ``croniter`` iterates).
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_SCHEDULE_LENGTH = 256
MISSED_LIMIT = 100
"""More missed times than this (since the last run, or within ``startingDeadlineSeconds``) earn a warning."""

_TOKEN = re.compile(r"^(\*|\?|[0-9]{1,2}|[A-Za-z]{3})(-([0-9]{1,2}|[A-Za-z]{3}))?(/[0-9]{1,2})?$")
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def expand(schedule: str) -> str:
    """The five-field form of ``schedule`` (macros replaced); raises ``ValueError`` saying what is wrong."""
    text = schedule.strip()
    if not text:
        raise ValueError("required: a cron schedule such as '*/5 * * * *' or '@hourly'")
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise ValueError(f"must be no more than {MAX_SCHEDULE_LENGTH} characters")
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ValueError("a time zone in the schedule is not supported: set spec.timeZone instead")
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"unknown macro {text!r}: one of {', '.join(sorted(MACROS))}")
        return MACROS[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}")
    for name, field in zip(_FIELDS, fields, strict=True):
        for token in field.split(","):
            if not _TOKEN.match(token):
                raise ValueError(f"invalid {name} field {field!r}")
    expr = " ".join(fields).replace("?", "*")
    if not croniter.is_valid(expr):
        raise ValueError(f"{text!r} is not a valid schedule (a value out of range or an unknown name)")
    return expr


def time_zone(name: str | None) -> datetime.tzinfo:
    """The zone named ``name`` (IANA), or the local zone for ``None``/""; ``ValueError`` if unknown."""
    if not name:
        local = datetime.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    if len(name) > 64 or not _ZONE.match(name) or ".." in name:
        raise ValueError(f"{name!r} is not a time zone name (such as 'Europe/Berlin' or 'Etc/UTC')")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Due:
    """What :func:`due` found: the most recent due time (``None`` if none) and how many were due."""

    time: datetime.datetime | None
    count: int

    @property
    def too_many_missed(self) -> bool:
        """Whether more than :data:`MISSED_LIMIT` times were due (Kubernetes warns, and runs the latest)."""
        return self.count > MISSED_LIMIT


def due(schedule: str, tz: datetime.tzinfo, earliest: datetime.datetime, now: datetime.datetime) -> Due:
    """The due times of ``schedule`` strictly after ``earliest`` and at or before ``now`` (aware datetimes)."""
    expr = expand(schedule)
    if now <= earliest:
        return Due(None, 0)
    it = croniter(expr, earliest.astimezone(tz))
    latest: datetime.datetime | None = None
    count = 0
    try:
        while count <= MISSED_LIMIT:
            t = it.get_next(datetime.datetime)
            if t > now:
                return Due(latest, count)
            latest, count = t, count + 1
        # More than the limit: the most recent is found from ``now`` backwards instead of by walking on.
        back = croniter(expr, (now + datetime.timedelta(microseconds=1)).astimezone(tz))
        return Due(back.get_prev(datetime.datetime), count)
    except CroniterBadDateError:  # a schedule that never matches (the 31st of February)
        return Due(latest, count)


def next_after(schedule: str, tz: datetime.tzinfo, t: datetime.datetime) -> datetime.datetime | None:
    """The first due time strictly after ``t``; ``None`` if the schedule never matches again."""
    try:
        out: datetime.datetime = croniter(expand(schedule), t.astimezone(tz)).get_next(datetime.datetime)
        return out
    except CroniterBadDateError:
        return None
