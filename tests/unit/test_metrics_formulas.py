"""metrics' pure formulas: duration buckets and percentiles, SLA, targets, costs, the funnel, and the batch fold."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from baton.consumer import Incoming
from baton.events import EventData, LeadAssigned, LeadReceived, LeadScored, LeadStatusChanged, SlaBreached
from baton_metrics.domain import (
    RELATIVE_ACCURACY,
    ZERO_BUCKET,
    Cost,
    CounterSum,
    Targets,
    bucket_seconds,
    cost_figures,
    duration_bucket,
    funnel_stages,
    mqls_target_between,
    quantile_seconds,
    rep_compliance,
    sla_compliance,
    sla_state,
    target_progress,
    total_cost,
)
from baton_metrics.readmodel import ReadModelBatch
from baton_metrics.schemas import DurationSummary, KpiFigures, KpiTotals, SlaCompliance

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)


def _incoming(data: EventData, at: datetime = T0) -> Incoming[Any]:
    return Incoming(id=f"{data.lead_id}-{at.isoformat()}", source="/test", time=at, data=data, now=at)


@pytest.mark.parametrize("seconds", [0.001, 0.5, 1, 59, 60, 61, 3600, 86_400 * 90])
def test_a_duration_lands_in_a_bucket_that_stands_for_it_within_the_relative_accuracy(seconds: float) -> None:
    assert bucket_seconds(duration_bucket(timedelta(seconds=seconds))) == pytest.approx(
        seconds, rel=RELATIVE_ACCURACY * 1.001
    )


def test_durations_under_a_millisecond_or_negative_land_in_the_zero_bucket() -> None:
    assert duration_bucket(timedelta(0)) == duration_bucket(timedelta(seconds=-5)) == ZERO_BUCKET
    assert bucket_seconds(ZERO_BUCKET) == 0.0


def test_percentiles_from_buckets_are_within_the_relative_accuracy_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(6, 1.5) for _ in range(5000))
    buckets: dict[int, int] = {}
    for value in values:
        bucket = duration_bucket(timedelta(seconds=value))
        buckets[bucket] = buckets.get(bucket, 0) + 1

    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * (len(values) - 1))]
        assert quantile_seconds(buckets, q) == pytest.approx(exact, rel=RELATIVE_ACCURACY * 1.001)


def test_buckets_of_two_days_merge_by_adding_counts() -> None:
    day_one = {duration_bucket(timedelta(seconds=10)): 1}
    day_two = {duration_bucket(timedelta(seconds=1000)): 3}

    merged = {**day_one, **day_two}

    assert quantile_seconds(merged, 0.5) == pytest.approx(1000, rel=0.0101)
    assert quantile_seconds(merged, 0.0) == pytest.approx(10, rel=0.0101)


def test_no_durations_have_no_percentile() -> None:
    assert quantile_seconds({}, 0.5) is None


def test_sla_is_on_track_then_at_risk_from_80_percent_then_breached_past_the_deadline() -> None:
    due = T0 + timedelta(minutes=10)

    assert sla_state(started_at=T0, due_at=due, now=T0 + timedelta(minutes=7, seconds=59)) == "on_track"
    assert sla_state(started_at=T0, due_at=due, now=T0 + timedelta(minutes=8)) == "at_risk"
    assert sla_state(started_at=T0, due_at=due, now=due) == "at_risk"
    assert sla_state(started_at=T0, due_at=due, now=due + timedelta(microseconds=1)) == "breached"


def test_sla_compliance_is_met_over_decided_and_unknown_when_nothing_was_decided() -> None:
    assert sla_compliance(KpiTotals()) == SlaCompliance(accept=None, touch=None, overall=None)
    assert sla_compliance(KpiTotals(accept_sla_met=3, accept_sla_breached=1, touch_sla_breached=2)) == SlaCompliance(
        accept=0.75, touch=0.0, overall=0.5
    )


def test_cost_per_mql_and_roi() -> None:
    figures = cost_figures(Cost(Decimal("1000"), "EUR"), mqls=3, won_amount=Decimal("2500"))

    assert figures is not None
    assert (figures.cost_per_mql, figures.roi) == (Decimal("333.33"), 1.5)


def test_cost_without_mqls_or_a_free_campaign_has_no_cost_per_mql_or_roi_instead_of_an_error() -> None:
    no_mqls = cost_figures(Cost(Decimal("1000"), "EUR"), mqls=0, won_amount=Decimal(0))
    free = cost_figures(Cost(Decimal("0"), "EUR"), mqls=5, won_amount=Decimal(100))

    assert no_mqls is not None and free is not None
    assert (no_mqls.cost_per_mql, no_mqls.roi) == (None, -1.0)
    assert (free.cost_per_mql, free.roi) == (Decimal("0.00"), None)
    assert cost_figures(None, mqls=5, won_amount=Decimal(1)) is None


def test_costs_in_different_currencies_are_not_added_up() -> None:
    assert total_cost([Cost(Decimal(1), "EUR"), Cost(Decimal(2), "USD")]) is None
    assert total_cost([]) is None
    assert total_cost([Cost(Decimal(1), "EUR"), Cost(Decimal(2), "EUR")]) == Cost(Decimal(3), "EUR")


def test_monthly_mql_target_is_spread_over_the_days_of_each_month() -> None:
    assert mqls_target_between(300, date(2024, 4, 1), date(2024, 4, 30)) == 300
    assert mqls_target_between(290, date(2024, 2, 1), date(2024, 2, 29)) == 290
    assert mqls_target_between(310, date(2024, 1, 31), date(2024, 2, 1)) == pytest.approx(10 + 310 / 29, abs=0.01)


def test_targets_compare_only_what_is_set_and_known() -> None:
    figures = KpiFigures(
        totals=KpiTotals(mql=15),
        rates={"mql_to_sal": None, "sal_to_sql": None, "sql_to_won": None},
        sla_compliance=SlaCompliance(overall=0.95),
        speed_to_lead=DurationSummary(count=1, p50_minutes=20.0),
    )

    open_range = target_progress(Targets(mqls_per_month=30), figures, start=None, end=date(2024, 4, 30))
    full = target_progress(
        Targets(mqls_per_month=30, sla_compliance=0.9, speed_to_lead_minutes=15),
        figures,
        start=date(2024, 4, 1),
        end=date(2024, 4, 30),
    )
    backwards = target_progress(Targets(mqls_per_month=30), figures, start=date(2024, 4, 2), end=date(2024, 4, 1))

    assert (open_range.mqls_target, open_range.mqls_attainment, open_range.sla_compliance_met) == (None, None, None)
    assert (full.mqls_target, full.mqls_attainment, full.sla_compliance_met, full.speed_to_lead_met) == (
        30,
        0.5,
        True,
        False,
    )
    assert (backwards.mqls_target, backwards.mqls_attainment) == (0.0, None)


def test_funnel_of_nobody_has_no_conversion_and_no_error() -> None:
    stages = funnel_stages(KpiTotals())

    assert [stage.from_previous for stage in stages] == [None] * 7


def test_rep_compliance_adds_accept_and_touch_and_leaves_out_unassigned_counts() -> None:
    sums = [
        CounterSum("accept_sla_met", 3, Decimal(0), key="rep-a"),
        CounterSum("touch_sla_breached", 1, Decimal(0), key="rep-a"),
        CounterSum("accept_sla_breached", 2, Decimal(0), key="rep-b"),
        CounterSum("accept_sla_met", 9, Decimal(0), key=""),
        CounterSum("assigned", 9, Decimal(0), key="rep-c"),
    ]

    assert [(r.rep_id, r.met, r.breached, r.compliance) for r in rep_compliance(sums)] == [
        ("rep-a", 3, 1, 0.75),
        ("rep-b", 0, 2, 0.0),
    ]


def _assigned(accept_due_at: datetime) -> LeadAssigned:
    return LeadAssigned(
        lead_id="l1",
        assignment_id="a1",
        rep_id="rep-1",
        rule="default",
        attempt=1,
        accept_due_at=accept_due_at,
        touch_due_at=T0 + timedelta(hours=4),
    )


def _accepted(at: datetime) -> LeadStatusChanged:
    return LeadStatusChanged(lead_id="l1", assignment_id="a1", rep_id="rep-1", status="accepted", occurred_at=at)


def _kpis(batch: ReadModelBatch) -> list[str]:
    return sorted(increment.cell.kpi for increment in batch.counts)


def test_accept_reported_at_the_deadline_meets_the_sla_and_one_after_it_breaches_it() -> None:
    on_time, late = ReadModelBatch(), ReadModelBatch()
    for batch, at in ((on_time, T0 + timedelta(minutes=15)), (late, T0 + timedelta(minutes=16))):
        batch.apply(_incoming(_assigned(T0 + timedelta(minutes=15))))
        batch.apply(_incoming(_accepted(at)))

    assert _kpis(on_time) == ["accept_sla_met", "accepted", "assigned"]
    assert _kpis(late) == ["accept_sla_breached", "accepted", "assigned"]


def test_an_accept_breach_reported_after_a_late_accept_is_not_counted_twice() -> None:
    batch = ReadModelBatch()
    batch.apply(_incoming(_assigned(T0 + timedelta(minutes=15))))
    batch.apply(_incoming(_accepted(T0 + timedelta(minutes=16))))
    batch.apply(
        _incoming(
            SlaBreached(
                lead_id="l1",
                assignment_id="a1",
                rep_id="rep-1",
                sla="accept",
                due_at=T0 + timedelta(minutes=15),
                breached_at=T0 + timedelta(minutes=15),
                action="reassigned",
            )
        )
    )

    assert _kpis(batch) == ["accept_sla_breached", "accepted", "assigned", "reassigned"]
    assert batch.closed == {"a1"} and batch.assignments == {}


@pytest.mark.parametrize("scored_first", [True, False])
def test_received_to_scored_is_measured_once_whichever_end_arrives_first(scored_first: bool) -> None:
    received = _incoming(LeadReceived(lead_id="l1", email="x@example.com", received_at=T0))
    scored = [
        _incoming(
            LeadScored(lead_id="l1", score=1, fit_grade="C", engagement=0, breakdown=[], model_version=1),
            T0 + timedelta(seconds=seconds),
        )
        for seconds in (3, 30)
    ]
    batch = ReadModelBatch()
    for incoming in [*scored, received] if scored_first else [received, *scored]:
        batch.apply(incoming)

    [measured] = batch.durations
    assert measured.measure == "pipeline:received_to_scored"
    assert bucket_seconds(measured.bucket) == pytest.approx(3, rel=0.0101)
