"""Schedules and next-run computation (chat-sessions-cron.md §5.2): `at` (one instant), `every`
(fixed interval from an anchor) and `cron` (5-field expression, optional leading seconds field,
in an IANA time zone through `zoneinfo`).

Daylight-saving rule for `cron` schedules (the same as Vixie cron's; see the README, "Cron"):

* A wall-clock time that does not exist (spring forward, e.g. 02:30 in Europe/Berlin on the
  last Sunday of March) fires **once, at the first instant after the gap** (03:00 local) when the
  expression names specific hours; a job whose hour field is `*` (it runs every hour) skips the
  missing hour, because that hour does not happen: `0 * * * *` runs 23 times that day.
* A wall-clock time that happens twice (fall back, 02:30 on the last Sunday of October) fires
  **once, at the first occurrence** when the expression names specific hours; a job whose hour
  field is `*` runs in both passes, because both hours really happen: `0 * * * *` runs 25 times.

So a daily job neither skips nor doubles, and an hourly job runs once per real hour."""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE_MS = 60_000
YEAR_MS = 365 * 24 * 3600 * 1000
AT_PAST_GRACE_MS = MINUTE_MS        # an `at` up to 1 min in the past is accepted (due at once)
AT_MAX_AHEAD_MS = 10 * YEAR_MS      # … and up to 10 years ahead
SEARCH_YEARS = 8                    # a cron expression that matches nothing in 8 years never matches

MONTH_NAMES = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class ScheduleError(ValueError):
    """An invalid schedule; the message is the one the client sees (400)."""


# --- time zones ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def host_zone() -> str:
    """The gateway host's IANA zone (the default for cron schedules without `tz`): $TZ, then
    /etc/localtime, then /etc/timezone, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for name in candidates:
        if name and valid_zone(name):
            return name
    return "UTC"


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False


def zone(name: str | None) -> ZoneInfo:
    """The ZoneInfo for `name` (None or empty: the host's zone)."""
    name = name or host_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f'Invalid schedule.tz: unknown time zone "{name}"') from None


# --- at -----------------------------------------------------------------------------------------------------

def iso_ms(ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    except (OverflowError, OSError, ValueError):  # beyond year 9999: say the number instead
        return f"{ms} ms since the epoch"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_at(value: Any) -> int:
    """An `at` value as epoch ms: ISO 8601 (no zone = UTC, a date alone = midnight UTC) or an
    all-digits epoch in ms."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10 and text[4] == "-":
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"Invalid schedule.at: expected ISO-8601 timestamp (got {value!r})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def check_at(at_ms: int, now_ms: int) -> None:
    if at_ms < now_ms - AT_PAST_GRACE_MS:
        raise ScheduleError(f"schedule.at is in the past: {iso_ms(at_ms)}")
    if at_ms > now_ms + AT_MAX_AHEAD_MS:
        raise ScheduleError(f"schedule.at is too far in the future: {iso_ms(at_ms)}")


# --- every --------------------------------------------------------------------------------------------------

def next_every(every_ms: int, anchor_ms: int, now_ms: int) -> int:
    """The first slot `anchor + k·every` strictly after now (the anchor itself while in the future)."""
    if now_ms < anchor_ms:
        return anchor_ms
    return anchor_ms + ((now_ms - anchor_ms) // every_ms + 1) * every_ms


# --- cron expressions ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CronExpr:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]   # 0 = Sunday
    any_day: bool              # day-of-month field starts with * or ?
    any_weekday: bool          # day-of-week field starts with * or ?

    @property
    def every_hour(self) -> bool:
        """The hour field covers all 24 hours (the DST rule above treats such jobs as hourly)."""
        return len(self.hours) == 24

    def day_matches(self, day: date) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow  # both restricted: either matches (standard cron)


def _value(token: str, names: dict[str, int] | None) -> int:
    key = token.lower()
    if names and key in names:
        return names[key]
    if not token.isdigit():
        raise ValueError(f"bad value {token!r}")
    return int(token)


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None = None, *, label: str,
           top: int | None = None) -> set[int]:
    """One field's values. `top` is the largest value allowed when written explicitly (7 for
    Sunday in the day-of-week field); `*` and open-ended steps stop at `hi`."""
    top = hi if top is None else top
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"empty list item in the {label} field")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r} in the {label} field")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(base, names)
            end = max(hi, start) if step_text else start
        if not (lo <= start <= top and lo <= end <= top):
            raise ValueError(f"{part!r} is out of range {lo}-{hi} in the {label} field")
        if start > end:
            raise ValueError(f"range {part!r} runs backwards in the {label} field")
        values.update(range(start, end + 1, step))
    return values


@lru_cache(maxsize=4096)
def parse_cron(expr: str) -> CronExpr:
    """Parse a 5-field (or 6-field, seconds first) cron expression; names of months and days,
    `*`, `?`, lists, ranges and steps; the @hourly/@daily/… macros."""
    text = " ".join(expr.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ScheduleError(f'Invalid cron expression "{expr}": expected 5 fields (minute hour day-of-month '
                            'month day-of-week)')
    try:
        sec = _field(fields[0], 0, 59, label="second")
        minute = _field(fields[1], 0, 59, label="minute")
        hour = _field(fields[2], 0, 23, label="hour")
        dom = _field(fields[3], 1, 31, label="day-of-month")
        month = _field(fields[4], 1, 12, MONTH_NAMES, label="month")
        dow = {d % 7 for d in _field(fields[5], 0, 6, DAY_NAMES, label="day-of-week", top=7)}
    except ValueError as exc:
        raise ScheduleError(f'Invalid cron expression "{expr}": {exc}') from None
    return CronExpr(tuple(sorted(sec)), tuple(sorted(minute)), tuple(sorted(hour)), frozenset(dom),
                    tuple(sorted(month)), frozenset(dow), fields[3][0] in "*?", fields[5][0] in "*?")


def _first_at_least(values: tuple[int, ...], value: int) -> int | None:
    i = bisect_left(values, value)
    return values[i] if i < len(values) else None


def _next_wall(e: CronExpr, n: datetime, last_year: int) -> datetime | None:
    """The first naive wall-clock time >= n (whole seconds) that matches `e`."""
    n = n.replace(microsecond=0)
    while n.year <= last_year:
        if n.month not in e.months:
            month = _first_at_least(e.months, n.month)
            n = datetime(n.year, month, 1) if month else datetime(n.year + 1, e.months[0], 1)
            continue
        if not e.day_matches(n.date()):
            n = datetime(n.year, n.month, n.day) + timedelta(days=1)
            continue
        hour = _first_at_least(e.hours, n.hour)
        if hour is None:
            n = datetime(n.year, n.month, n.day) + timedelta(days=1)
            continue
        if hour != n.hour:
            n = n.replace(hour=hour, minute=0, second=0)
        minute = _first_at_least(e.minutes, n.minute)
        if minute is None:
            n = n.replace(minute=0, second=0) + timedelta(hours=1)
            continue
        if minute != n.minute:
            n = n.replace(minute=minute, second=0)
        second = _first_at_least(e.seconds, n.second)
        if second is None:
            n = n.replace(second=0) + timedelta(minutes=1)
            continue
        return n.replace(second=second)
    return None


def _offset_s(z: ZoneInfo, t: int) -> int:
    return int(datetime.fromtimestamp(t, z).utcoffset().total_seconds())  # type: ignore[union-attr]


def _wall_offsets(z: ZoneInfo, n: datetime) -> tuple[int, int]:
    """UTC offsets of wall time n with fold=0 and fold=1 (equal unless n is in a gap or a fold)."""
    a = n.replace(tzinfo=z, fold=0).utcoffset()
    b = n.replace(tzinfo=z, fold=1).utcoffset()
    return int(a.total_seconds()), int(b.total_seconds())  # type: ignore[union-attr]


def _epoch(n: datetime) -> int:
    return int((n - datetime(1970, 1, 1)).total_seconds())


def _transition(z: ZoneInfo, lo: int, hi: int, target: int) -> int:
    """The first second in (lo, hi] whose offset is `target` (lo's is not, hi's is)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(z, mid) == target:
            hi = mid
        else:
            lo = mid
    return hi


def next_cron(e: CronExpr, z: ZoneInfo, after_ms: int) -> int | None:
    """The first instant (ms) matching `e` in zone `z` strictly after the second holding
    `after_ms`, with the DST rule of the module docstring; None if it never matches."""
    start = after_ms // 1000 + 1
    wall = datetime.fromtimestamp(start, z).replace(tzinfo=None)
    last_year = wall.year + SEARCH_YEARS
    off0, off1 = _wall_offsets(z, wall)
    cursor = wall
    if off0 > off1:  # we are inside a repeated hour: its second pass may still be ahead
        cursor = _fold_range(z, wall, off0, off1)[0]
    while True:
        n = _next_wall(e, cursor, last_year)
        if n is None:
            return None
        off0, off1 = _wall_offsets(z, n)
        local = _epoch(n)
        if off0 == off1:  # an ordinary wall time
            if local - off0 >= start:
                return (local - off0) * 1000
            cursor = n + timedelta(seconds=1)
        elif off0 < off1:  # in a gap: the wall time does not exist
            if not e.every_hour:
                moment = _transition(z, local - off1, local - off0, off1)
                if moment >= start:
                    return moment * 1000
            cursor = n + timedelta(seconds=1)
        else:  # in a fold: the wall time happens twice
            fold_start, fold_end = _fold_range(z, n, off0, off1)
            m: datetime | None = n
            while m is not None and m < fold_end:  # first pass
                if _epoch(m) - off0 >= start:
                    return (_epoch(m) - off0) * 1000
                m = _next_wall(e, m + timedelta(seconds=1), last_year)
            if e.every_hour:  # second pass
                m = _next_wall(e, fold_start, last_year)
                while m is not None and m < fold_end:
                    if _epoch(m) - off1 >= start:
                        return (_epoch(m) - off1) * 1000
                    m = _next_wall(e, m + timedelta(seconds=1), last_year)
            cursor = fold_end


def _fold_range(z: ZoneInfo, n: datetime, off0: int, off1: int) -> tuple[datetime, datetime]:
    """The repeated wall-clock interval [start, end) that holds the ambiguous wall time n."""
    local = _epoch(n)
    moment = _transition(z, local - off0, local - off1, off1)
    epoch = datetime(1970, 1, 1)
    return epoch + timedelta(seconds=moment + off1), epoch + timedelta(seconds=moment + off0)


# --- one entry point --------------------------------------------------------------------------------------

def validate(schedule: dict[str, Any], now_ms: int, *, check_past: bool = True) -> None:
    """Raise ScheduleError unless the (normalised) schedule can be computed."""
    kind = schedule.get("kind")
    if kind == "at":
        at_ms = parse_at(schedule.get("at"))
        if check_past:
            check_at(at_ms, now_ms)
    elif kind == "cron":
        expr = parse_cron(str(schedule.get("expr", "")))
        z = zone(schedule.get("tz"))
        if next_cron(expr, z, now_ms) is None:
            raise ScheduleError(f'Invalid cron expression "{schedule.get("expr")}": it never matches')


def next_run(schedule: dict[str, Any], *, now_ms: int, created_at_ms: int) -> int | None:
    """The natural next run after `now_ms` (§5.2); raises ScheduleError for a broken schedule."""
    kind = schedule.get("kind")
    if kind == "at":
        return parse_at(schedule.get("at"))
    if kind == "every":
        every = int(schedule.get("everyMs") or 0)
        if every < 1:
            raise ScheduleError("schedule.everyMs must be >= 1")
        anchor = schedule.get("anchorMs")
        return next_every(every, created_at_ms if anchor is None else int(anchor), now_ms)
    if kind == "cron":
        return next_cron(parse_cron(str(schedule.get("expr", ""))), zone(schedule.get("tz")), now_ms)
    raise ScheduleError(f"unknown schedule kind: {kind!r}")
