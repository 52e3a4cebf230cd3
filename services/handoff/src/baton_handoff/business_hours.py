"""A rep's working time: shifts in local wall-clock time, measured in real elapsed time.

``working_hours`` maps a weekday (``mon`` … ``sun``) to shifts ``[["09:00", "17:30"], …]`` in the rep's IANA
timezone; ``"24:00"`` ends a day, a weekday left out is a day off, and ``None`` means always working. A shift
runs from its start up to, not including, its end. A night shift is written as two shifts, one ending at
``"24:00"`` and one starting at ``"00:00"`` the next day, so the two add up to one stretch of work.

Shift times are read like the clocks on the wall on that very day, so a shift on the day the clocks change lasts
the real time that passes between its start and its end (09:00–17:00 is 8 hours; 00:00–08:00 is 7 hours on the
day the clocks go forward and 9 on the day they go back). A wall time the clocks skip is the moment they skipped
it; a wall time they show twice is its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WorkingHours = Mapping[str, Sequence[Sequence[str]]]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 4 * 366
"""How far ahead ``add_working_time`` looks for working time before it gives up."""

Shift = tuple[datetime, datetime]


class NoWorkingTime(ValueError):
    """The rep's working hours never add up to the time asked for: they have no shifts, or too few."""


def check_working_hours(working_hours: WorkingHours) -> None:
    """Raises ValueError naming what is wrong unless ``working_hours`` is a valid weekly schedule."""
    for weekday, shifts in working_hours.items():
        if weekday not in WEEKDAYS:
            raise ValueError(f"{weekday!r} is not a weekday; use one of {', '.join(WEEKDAYS)}")
        for shift in shifts:
            _shift_times(weekday, shift)


def is_working(at: datetime, *, working_hours: WorkingHours | None, timezone: str) -> bool:
    """Tells whether ``at`` falls inside one of the rep's shifts."""
    at = _in_utc(at)
    if working_hours is None:
        return True
    zone = ZoneInfo(timezone)
    local_day = at.astimezone(zone).date()
    return any(
        begin <= at < end for begin, end in shifts_between(local_day - timedelta(days=1), 3, working_hours, zone)
    )


def add_working_time(
    start: datetime, duration: timedelta, *, working_hours: WorkingHours | None, timezone: str
) -> datetime:
    """The instant when ``duration`` of the rep's working time has passed after ``start``, in UTC."""
    start = _in_utc(start)
    if duration < timedelta(0):
        raise ValueError(f"a working time cannot be negative: {duration}")
    if working_hours is None or duration == timedelta(0):
        return start + duration
    if not any(working_hours.values()):
        raise NoWorkingTime("the working hours have no shifts, so no working time ever passes")
    zone = ZoneInfo(timezone)
    remaining = duration
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    for begin, end in shifts_between(first_day, SEARCH_DAYS, working_hours, zone):
        if end <= start:
            continue
        begin = max(begin, start)
        if remaining <= end - begin:
            return begin + remaining
        remaining -= end - begin
    raise NoWorkingTime(f"{duration} of working time does not pass within {SEARCH_DAYS} days of {start.isoformat()}")


def working_time_between(
    start: datetime, end: datetime, *, working_hours: WorkingHours | None, timezone: str
) -> timedelta:
    """How much of the rep's working time lies between ``start`` and ``end`` (nothing when ``end`` is earlier)."""
    start, end = _in_utc(start), _in_utc(end)
    if end <= start:
        return timedelta(0)
    if working_hours is None:
        return end - start
    zone = ZoneInfo(timezone)
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    days = (end.astimezone(zone).date() - first_day).days + 2
    total = timedelta(0)
    for begin, finish in shifts_between(first_day, days, working_hours, zone):
        overlap = min(finish, end) - max(begin, start)
        if overlap > timedelta(0):
            total += overlap
    return total


def shifts_between(first_day: date, days: int, working_hours: WorkingHours, zone: ZoneInfo) -> Iterator[Shift]:
    """The shifts of ``days`` days from ``first_day`` on, as UTC instants in order, overlapping ones merged."""
    pending: Shift | None = None
    for offset in range(days):
        for begin, end in _shifts_on(first_day + timedelta(days=offset), working_hours, zone):
            if pending is not None and begin <= pending[1]:
                pending = (pending[0], max(pending[1], end))
                continue
            if pending is not None:
                yield pending
            pending = (begin, end)
    if pending is not None:
        yield pending


def _shifts_on(day: date, working_hours: WorkingHours, zone: ZoneInfo) -> list[Shift]:
    """One day's shifts as UTC instants, in order."""
    weekday = WEEKDAYS[day.weekday()]
    shifts = []
    for shift in working_hours.get(weekday, ()):
        begin, end = _shift_times(weekday, shift)
        shifts.append((_instant(day, begin, zone), _instant(day, end, zone)))
    return sorted(shifts)


def _shift_times(weekday: str, shift: Sequence[str]) -> tuple[timedelta, timedelta]:
    """A shift's start and end as times since midnight; raises ValueError when it is not a valid shift."""
    if len(shift) != 2:
        raise ValueError(f"a {weekday} shift must be [start, end], not {list(shift)}")
    begin, end = (_time_of_day(weekday, text) for text in shift)
    if end <= begin:
        raise ValueError(
            f"the {weekday} shift {list(shift)} must end after it starts; "
            'a night shift is two shifts, one ending at "24:00" and one starting at "00:00"'
        )
    return begin, end


def _time_of_day(weekday: str, text: str) -> timedelta:
    """``"HH:MM"`` (``"24:00"`` for the end of the day) as the time since midnight."""
    hours, _, minutes = str(text).partition(":")
    if not (len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"{text!r} in the {weekday} shifts is not a time of day like 09:30")
    since_midnight = timedelta(hours=int(hours), minutes=int(minutes))
    if int(minutes) > 59 or since_midnight > timedelta(hours=24):
        raise ValueError(f"{text!r} in the {weekday} shifts is not between 00:00 and 24:00")
    return since_midnight


def _instant(day: date, since_midnight: timedelta, zone: ZoneInfo) -> datetime:
    """The UTC instant the clocks in ``zone`` show ``since_midnight`` on ``day`` (the day's end for 24:00)."""
    wall = datetime.combine(day, time()) + since_midnight
    first = wall.replace(tzinfo=zone)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)
    # The clocks skipped this wall time: it is read as the moment they jumped, the first second whose offset
    # differs from the one before the jump, somewhere between its readings with the offset after the jump
    # (earlier) and with the offset before it (later).
    earlier = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    later = int(first.timestamp())
    offset_before_jump = _offset_at(earlier, zone)
    while later - earlier > 1:
        middle = (earlier + later) // 2
        if _offset_at(middle, zone) == offset_before_jump:
            earlier = middle
        else:
            later = middle
    return datetime.fromtimestamp(later, UTC)


def _offset_at(timestamp: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, zone).utcoffset()


def _in_utc(at: datetime) -> datetime:
    """``at`` in UTC, where adding and subtracting time is real elapsed time (in a local zone it is wall-clock)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no timezone; working time is computed on aware instants")
    return at.astimezone(UTC)
