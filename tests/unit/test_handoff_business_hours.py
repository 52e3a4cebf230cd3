"""A rep's working time: shifts in their own timezone, across nights, weekends and the days the clocks change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from baton_handoff.business_hours import (
    NoWorkingTime,
    WorkingHours,
    add_working_time,
    check_working_hours,
    is_working,
    working_time_between,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
WEEKDAYS_NINE_TO_FIVE: WorkingHours = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY_NINE_TO_FIVE: WorkingHours = {
    day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
AROUND_THE_CLOCK: WorkingHours = {
    day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
NIGHTS_ONLY: WorkingHours = {day: [["00:00", "08:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
# The clocks in Berlin go forward on the last Sunday of March and back on the last Sunday of October.
BERLIN_SPRING_FORWARD = datetime(2030, 3, 31).date()
BERLIN_FALL_BACK = datetime(2030, 10, 27).date()


def local(text: str, zone: str = BERLIN) -> datetime:
    """A wall-clock time in ``zone``, as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- is_working ---------------------------------------------------------------------------------------------------


def test_a_rep_without_working_hours_is_always_working() -> None:
    assert is_working(utc("2030-06-08T03:00"), working_hours=None, timezone=BERLIN)


def test_the_same_instant_is_inside_a_berlin_reps_hours_and_outside_a_new_york_reps() -> None:
    at = utc("2030-06-03T08:00")  # Monday: 10:00 in Berlin, 04:00 in New York

    assert is_working(at, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)
    assert not is_working(at, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=NEW_YORK)


def test_a_new_york_rep_is_working_after_a_berlin_rep_has_gone_home() -> None:
    at = utc("2030-06-03T16:00")  # Monday: 18:00 in Berlin, 12:00 in New York

    assert not is_working(at, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)
    assert is_working(at, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=NEW_YORK)


def test_a_shift_includes_its_start_and_excludes_its_end() -> None:
    assert is_working(local("2030-06-03T09:00"), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)
    assert not is_working(local("2030-06-03T08:59:59"), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)
    assert not is_working(local("2030-06-03T17:00"), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)


def test_a_weekday_left_out_is_a_day_off() -> None:
    assert not is_working(local("2030-06-08T11:00"), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN)


def test_a_shift_ending_at_24_00_runs_until_midnight() -> None:
    late: WorkingHours = {"mon": [["18:00", "24:00"]]}

    assert is_working(local("2030-06-03T23:59:59"), working_hours=late, timezone=BERLIN)
    assert not is_working(local("2030-06-04T00:00"), working_hours=late, timezone=BERLIN)


def test_the_same_utc_hour_is_inside_berlin_hours_after_the_clocks_go_forward_and_outside_before() -> None:
    # 07:30 UTC is 08:30 in Berlin on winter time and 09:30 on summer time.
    assert not is_working(utc("2030-03-29T07:30"), working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN)
    assert is_working(utc("2030-03-31T07:30"), working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN)


def test_the_same_utc_hour_is_inside_berlin_hours_before_the_clocks_go_back_and_outside_after() -> None:
    assert is_working(utc("2030-10-26T07:30"), working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN)
    assert not is_working(utc("2030-10-27T07:30"), working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN)


def test_a_rep_with_no_shifts_is_never_working() -> None:
    assert not is_working(utc("2030-06-03T12:00"), working_hours={}, timezone=BERLIN)


# --- working_time_between -----------------------------------------------------------------------------------------


def test_a_nine_to_five_shift_is_eight_real_hours_on_the_days_the_clocks_change() -> None:
    for day in (BERLIN_SPRING_FORWARD, BERLIN_FALL_BACK):
        start, end = local(f"{day}T00:00"), local(f"{day}T23:59")

        assert working_time_between(start, end, working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN) == timedelta(
            hours=8
        )


def test_a_night_shift_over_the_skipped_hour_is_seven_real_hours() -> None:
    start, end = local(f"{BERLIN_SPRING_FORWARD}T00:00"), local(f"{BERLIN_SPRING_FORWARD}T12:00")

    assert working_time_between(start, end, working_hours=NIGHTS_ONLY, timezone=BERLIN) == timedelta(hours=7)


def test_a_night_shift_over_the_repeated_hour_is_nine_real_hours() -> None:
    start, end = local(f"{BERLIN_FALL_BACK}T00:00"), local(f"{BERLIN_FALL_BACK}T12:00")

    assert working_time_between(start, end, working_hours=NIGHTS_ONLY, timezone=BERLIN) == timedelta(hours=9)


def test_a_shift_starting_in_the_skipped_hour_starts_when_the_clocks_jump() -> None:
    early: WorkingHours = {"sun": [["02:30", "04:00"]]}
    start, end = local(f"{BERLIN_SPRING_FORWARD}T00:00"), local(f"{BERLIN_SPRING_FORWARD}T12:00")

    assert working_time_between(start, end, working_hours=early, timezone=BERLIN) == timedelta(hours=1)
    assert is_working(utc(f"{BERLIN_SPRING_FORWARD}T01:00"), working_hours=early, timezone=BERLIN)
    assert not is_working(utc(f"{BERLIN_SPRING_FORWARD}T00:59:59"), working_hours=early, timezone=BERLIN)


def test_working_time_counts_only_the_shifts_inside_the_interval() -> None:
    start, end = local("2030-06-03T16:00"), local("2030-06-04T10:30")  # Monday 16:00 to Tuesday 10:30

    assert working_time_between(start, end, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN) == timedelta(
        hours=2, minutes=30
    )


def test_a_week_holds_five_working_days() -> None:
    start, end = local("2030-06-03T00:00"), local("2030-06-10T00:00")

    assert working_time_between(start, end, working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN) == timedelta(hours=40)


def test_overlapping_shifts_are_counted_once() -> None:
    overlapping: WorkingHours = {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}
    start, end = local("2030-06-03T00:00"), local("2030-06-04T00:00")

    assert working_time_between(start, end, working_hours=overlapping, timezone=BERLIN) == timedelta(hours=4)


def test_no_working_time_lies_between_an_instant_and_an_earlier_one() -> None:
    start = local("2030-06-03T12:00")

    assert working_time_between(start, start - timedelta(hours=1), working_hours=None, timezone=BERLIN) == timedelta(0)


def test_without_working_hours_all_the_time_between_counts() -> None:
    start = utc("2030-06-08T03:00")

    assert working_time_between(start, start + timedelta(days=2), working_hours=None, timezone=BERLIN) == timedelta(
        days=2
    )


def test_without_working_hours_the_time_between_is_real_time_across_the_skipped_hour() -> None:
    start, end = local(f"{BERLIN_SPRING_FORWARD}T00:00"), local(f"{BERLIN_SPRING_FORWARD}T12:00")

    assert working_time_between(start, end, working_hours=None, timezone=BERLIN) == timedelta(hours=11)


# --- add_working_time ---------------------------------------------------------------------------------------------


def test_a_deadline_inside_a_shift_is_the_start_plus_the_duration() -> None:
    due = add_working_time(
        local("2030-06-03T10:00"), timedelta(minutes=15), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN
    )

    assert due == local("2030-06-03T10:15")
    assert due.tzinfo is UTC


def test_a_deadline_crosses_the_night_to_the_next_morning() -> None:
    due = add_working_time(
        local("2030-06-04T16:30"), timedelta(hours=1), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN
    )

    assert due == local("2030-06-05T09:30")


def test_a_deadline_crosses_the_weekend_to_monday() -> None:
    due = add_working_time(
        local("2030-06-07T16:30"), timedelta(hours=4), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN
    )

    assert due == local("2030-06-10T12:30")


def test_a_lead_handed_over_at_night_is_due_counting_from_the_next_shift() -> None:
    due = add_working_time(
        local("2030-06-08T23:00"), timedelta(minutes=15), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN
    )

    assert due == local("2030-06-10T09:15")


def test_a_deadline_that_uses_up_a_shift_exactly_falls_on_its_end() -> None:
    due = add_working_time(
        local("2030-06-03T09:00"), timedelta(hours=8), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=BERLIN
    )

    assert due == local("2030-06-03T17:00")


def test_shifts_that_meet_at_midnight_count_as_one_stretch() -> None:
    night: WorkingHours = {"mon": [["22:00", "24:00"]], "tue": [["00:00", "06:00"]]}

    due = add_working_time(local("2030-06-03T23:00"), timedelta(hours=3), working_hours=night, timezone=BERLIN)

    assert due == local("2030-06-04T02:00")


def test_a_deadline_across_the_skipped_hour_counts_real_hours() -> None:
    due = add_working_time(
        local("2030-03-30T12:00"), timedelta(hours=24), working_hours=AROUND_THE_CLOCK, timezone=BERLIN
    )

    assert due == local("2030-03-31T13:00")


def test_a_deadline_across_the_repeated_hour_counts_real_hours() -> None:
    due = add_working_time(
        local("2030-10-26T12:00"), timedelta(hours=24), working_hours=AROUND_THE_CLOCK, timezone=BERLIN
    )

    assert due == local("2030-10-27T11:00")


def test_a_new_york_deadline_follows_new_york_hours() -> None:
    due = add_working_time(
        utc("2030-06-03T20:30"), timedelta(hours=1), working_hours=WEEKDAYS_NINE_TO_FIVE, timezone=NEW_YORK
    )

    assert due == local("2030-06-04T09:30", NEW_YORK)


def test_without_working_hours_a_deadline_is_wall_clock_time() -> None:
    due = add_working_time(local("2030-03-31T01:30"), timedelta(hours=2), working_hours=None, timezone=BERLIN)

    assert due == local("2030-03-31T04:30")


@pytest.mark.parametrize("minutes", [1, 15, 60, 479, 480, 481, 2400, 10_000])
def test_the_working_time_until_a_deadline_is_the_duration_asked_for(minutes: int) -> None:
    start = local("2030-03-27T15:10")  # a week that has the clocks go forward in it
    duration = timedelta(minutes=minutes)

    due = add_working_time(start, duration, working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN)

    assert working_time_between(start, due, working_hours=EVERY_DAY_NINE_TO_FIVE, timezone=BERLIN) == duration


def test_a_rep_with_no_shifts_has_no_deadline() -> None:
    with pytest.raises(NoWorkingTime, match="no shifts"):
        add_working_time(local("2030-06-03T10:00"), timedelta(minutes=15), working_hours={"mon": []}, timezone=BERLIN)


def test_a_deadline_beyond_the_years_searched_is_refused_instead_of_searched_forever() -> None:
    one_hour_a_week: WorkingHours = {"mon": [["09:00", "10:00"]]}

    with pytest.raises(NoWorkingTime, match="does not pass within"):
        add_working_time(
            local("2030-06-03T10:00"), timedelta(hours=1000), working_hours=one_hour_a_week, timezone=BERLIN
        )


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_time(local("2030-06-03T10:00"), timedelta(minutes=-1), working_hours=None, timezone=BERLIN)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        is_working(datetime(2030, 6, 3, 10), working_hours=None, timezone=BERLIN)


# --- check_working_hours ------------------------------------------------------------------------------------------


def test_a_valid_schedule_passes_the_check() -> None:
    check_working_hours({"mon": [["00:00", "12:00"], ["13:00", "24:00"]], "sat": []})


@pytest.mark.parametrize(
    ("working_hours", "complaint"),
    [
        ({"monday": [["09:00", "17:00"]]}, "'monday' is not a weekday"),
        ({"mon": [["9am", "17:00"]]}, "not a time of day"),
        ({"mon": [["09:00", "24:30"]]}, "not between 00:00 and 24:00"),
        ({"mon": [["09:60", "17:00"]]}, "not between 00:00 and 24:00"),
        ({"mon": [["22:00", "06:00"]]}, "must end after it starts"),
        ({"mon": [["09:00"]]}, "must be \\[start, end\\]"),
    ],
)
def test_an_invalid_schedule_is_refused_with_the_reason(working_hours: WorkingHours, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_working_hours(working_hours)
