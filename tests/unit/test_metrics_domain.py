"""metrics' KPI rules: which event counts which KPI on which UTC day, and the formulas on the totals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from baton.events import LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged, RoutingAttributes
from baton_metrics.domain import (
    UNKNOWN,
    CounterSum,
    KpiCell,
    KpiIncrement,
    combine,
    conversion_rates,
    count_assigned,
    count_qualified,
    count_received,
    count_status_change,
    kpi_day,
    kpi_report,
    ratio,
)
from baton_metrics.schemas import KpiTotals

NEW_YORK_WINTER = timezone(timedelta(hours=-5))
KARACHI = timezone(timedelta(hours=5))
MAY_1 = date(2024, 5, 1)
MAY_2 = date(2024, 5, 2)


def _assigned(**changes: object) -> LeadAssigned:
    fields: dict[str, object] = {
        "lead_id": "l1",
        "assignment_id": "a1",
        "rep_id": "rep-1",
        "team": "emea",
        "source": "webinar",
        "campaign": "spring",
        "rule": "default",
        "attempt": 1,
        "accept_due_at": datetime(2024, 5, 2, tzinfo=UTC),
        "touch_due_at": datetime(2024, 5, 3, tzinfo=UTC),
    }
    fields.update(changes)
    return LeadAssigned.model_validate(fields)


def _status(status: str, **changes: object) -> LeadStatusChanged:
    fields: dict[str, object] = {
        "lead_id": "l1",
        "assignment_id": "a1",
        "rep_id": "rep-1",
        "team": "emea",
        "source": "webinar",
        "campaign": "spring",
        "status": status,
        "occurred_at": datetime(2024, 5, 1, 12, tzinfo=UTC),
    }
    fields.update(changes)
    return LeadStatusChanged.model_validate(fields)


def _cell(kpi: str, day: date = MAY_1, **dimensions: str) -> KpiCell:
    values = {"source": "webinar", "campaign": "spring", "team": "emea", "rep_id": "rep-1"} | dimensions
    return KpiCell(day=day, kpi=kpi, **values)


# The UTC day


def test_late_evening_at_a_negative_offset_counts_on_the_next_utc_day() -> None:
    assert kpi_day(datetime(2024, 5, 1, 23, 30, tzinfo=NEW_YORK_WINTER)) == MAY_2


def test_early_morning_at_a_positive_offset_counts_on_the_previous_utc_day() -> None:
    assert kpi_day(datetime(2024, 5, 2, 1, 0, tzinfo=KARACHI)) == MAY_1


def test_utc_midnight_starts_the_new_day() -> None:
    assert kpi_day(datetime(2024, 5, 2, 0, 0, tzinfo=UTC)) == MAY_2
    assert kpi_day(datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=UTC)) == MAY_1


def test_a_time_without_an_offset_has_no_kpi_day() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        kpi_day(datetime(2024, 5, 1, 12, 0))


# Which event counts which KPI, on which day


def test_received_lead_counts_on_the_utc_day_it_was_received_without_team_or_rep() -> None:
    lead = LeadReceived(
        lead_id="l1",
        email="a@example.com",
        source="webinar",
        campaign="spring",
        received_at=datetime(2024, 5, 1, 21, 0, tzinfo=NEW_YORK_WINTER),
    )

    assert count_received(lead) == KpiIncrement(_cell("received", MAY_2, team=UNKNOWN, rep_id=UNKNOWN))


def test_lead_without_source_or_campaign_counts_under_unknown() -> None:
    lead = LeadReceived(lead_id="l1", email="a@example.com", received_at=datetime(2024, 5, 1, tzinfo=UTC))

    cell = count_received(lead).cell

    assert (cell.source, cell.campaign, cell.team, cell.rep_id) == (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)


def test_mql_counts_on_the_utc_day_of_the_qualifying_events_time_by_the_leads_source() -> None:
    mql = LeadQualified(
        lead_id="l1",
        score=50,
        fit_grade="A",
        reason="threshold",
        lead=RoutingAttributes(source="webinar", campaign="spring"),
    )

    increment = count_qualified(mql, time=datetime(2024, 5, 1, 23, 30, tzinfo=NEW_YORK_WINTER))

    assert increment == KpiIncrement(_cell("mql", MAY_2, team=UNKNOWN, rep_id=UNKNOWN))


def test_assignment_counts_for_its_team_and_rep_on_the_utc_day_of_the_events_time() -> None:
    increment = count_assigned(_assigned(), time=datetime(2024, 5, 2, 1, 0, tzinfo=KARACHI))

    assert increment == KpiIncrement(_cell("assigned", MAY_1))


@pytest.mark.parametrize("status", ["accepted", "rejected", "contacted", "qualified", "lost"])
def test_status_counts_as_its_own_kpi_on_the_day_it_occurred_without_an_amount(status: str) -> None:
    change = _status(status, amount=Decimal("500"), occurred_at=datetime(2024, 5, 1, 23, 30, tzinfo=NEW_YORK_WINTER))

    assert count_status_change(change) == KpiIncrement(_cell(status, MAY_2))


def test_an_assignment_closed_because_its_person_was_erased_counts_as_erased_not_lost() -> None:
    assert count_status_change(_status("lost", reason="erased")) == KpiIncrement(_cell("erased"))
    assert count_status_change(_status("lost", reason="went with a competitor")) == KpiIncrement(_cell("lost"))


def test_won_deal_adds_its_amount() -> None:
    assert count_status_change(_status("won", amount=Decimal("1234.50"))) == KpiIncrement(
        _cell("won"), amount=Decimal("1234.50")
    )


def test_won_deal_without_an_amount_adds_nothing_to_the_won_amount() -> None:
    assert count_status_change(_status("won")).amount == Decimal(0)


def test_increments_to_one_cell_are_added_up_and_cells_come_in_order() -> None:
    later, earlier = _cell("won", MAY_2), _cell("won", MAY_1)

    combined = combine(
        [
            KpiIncrement(later, amount=Decimal("10")),
            KpiIncrement(earlier),
            KpiIncrement(later, amount=Decimal("5.5")),
        ]
    )

    assert combined == [KpiIncrement(earlier), KpiIncrement(later, count=2, amount=Decimal("15.5"))]


def test_nothing_to_combine_gives_nothing() -> None:
    assert combine([]) == []


# Formulas


def test_ratio_is_rounded_to_four_places() -> None:
    assert ratio(1, 3) == 0.3333
    assert ratio(2, 2) == 1.0
    assert ratio(0, 5) == 0.0


def test_ratio_over_zero_is_unknown_not_an_error() -> None:
    assert ratio(0, 0) is None
    assert ratio(3, 0) is None


def test_conversion_rates_follow_the_funnel() -> None:
    totals = KpiTotals(mql=10, accepted=8, qualified=4, won=1)

    rates = conversion_rates(totals)

    assert (rates.mql_to_sal, rates.sal_to_sql, rates.sql_to_won) == (0.8, 0.5, 0.25)


def test_conversion_rates_of_an_empty_funnel_are_unknown() -> None:
    rates = conversion_rates(KpiTotals())

    assert (rates.mql_to_sal, rates.sal_to_sql, rates.sql_to_won) == (None, None, None)


def test_conversion_rate_after_a_stage_nobody_reached_is_unknown() -> None:
    rates = conversion_rates(KpiTotals(mql=5, accepted=0))

    assert (rates.mql_to_sal, rates.sal_to_sql, rates.sql_to_won) == (0.0, None, None)


def test_report_over_an_empty_range_is_all_zero_with_unknown_rates() -> None:
    report = kpi_report([], start=MAY_2, end=MAY_1, group_by="source")

    assert report.totals == KpiTotals()
    assert (report.rates.mql_to_sal, report.rates.sal_to_sql, report.rates.sql_to_won) == (None, None, None)
    assert report.groups == []


def test_report_adds_up_overall_and_per_group_with_the_won_amount() -> None:
    sums = [
        CounterSum("mql", 4, Decimal(0), key="ads"),
        CounterSum("accepted", 3, Decimal(0), key="ads"),
        CounterSum("mql", 2, Decimal(0), key="webinar"),
        CounterSum("accepted", 1, Decimal(0), key="webinar"),
        CounterSum("won", 1, Decimal("250.00"), key="webinar"),
    ]

    report = kpi_report(sums, start=MAY_1, end=MAY_2, group_by="source")

    assert (report.totals.mql, report.totals.accepted, report.totals.won) == (6, 4, 1)
    assert report.totals.won_amount == Decimal("250.00")
    assert report.rates.mql_to_sal == 0.6667
    assert [(g.key, g.totals.mql, g.rates.mql_to_sal) for g in report.groups] == [("ads", 4, 0.75), ("webinar", 2, 0.5)]
    assert report.groups[1].totals.won_amount == Decimal("250.00")


def test_report_leaves_out_kpis_it_does_not_show() -> None:
    report = kpi_report([CounterSum("sla_breached", 7, Decimal(0))], start=None, end=None, group_by=None)

    assert report.totals == KpiTotals()
    assert report.groups == []
