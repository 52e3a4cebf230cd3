"""The KPI rules, without I/O: which event counts which KPI on which day, and the formulas built on the totals.

KPIs are counted by UTC day, whatever offset the time an event carries was written in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from baton.events import LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged
from baton_metrics.schemas import (
    CampaignCostFigures,
    ConversionRates,
    DurationSummary,
    FunnelStage,
    GroupBy,
    KpiFigures,
    KpiGroup,
    KpiReport,
    KpiTotals,
    RepCompliance,
    SlaCompliance,
    SlaState,
    TargetProgress,
)

UNKNOWN = ""
"""The dimension value of a count whose event did not name it (a lead without a campaign, say)."""

COUNTED_KPIS = (
    "received",
    "mql",
    "assigned",
    "accepted",
    "rejected",
    "recycled",
    "contacted",
    "qualified",
    "won",
    "lost",
    "erased",
    "reassigned",
    "escalated",
    "accept_sla_met",
    "accept_sla_breached",
    "touch_sla_met",
    "touch_sla_breached",
)

ERASED_KPI = "erased"
"""The KPI of open assignments withdrawn because their person asked to be forgotten."""
ERASED_REASON = "erased"
"""The reason handoff gives when it closes an erased person's open assignment."""

REJECTED_BY_REASON = "rejected:"
"""The prefix of the KPI that counts rejections by their reason: ``rejected:<reason>``."""

_KPI_LENGTH = 64


@dataclass(frozen=True, order=True)
class KpiCell:
    """Where a count goes: a KPI on a UTC day for a source, campaign, team and rep."""

    day: date
    source: str
    campaign: str
    team: str
    rep_id: str
    kpi: str


@dataclass(frozen=True)
class KpiIncrement:
    """What one event adds to a cell: one to its count, and an amount (a won deal's value)."""

    cell: KpiCell
    count: int = 1
    amount: Decimal = Decimal(0)


@dataclass(frozen=True)
class CounterSum:
    """The total of one KPI over a range of days, for one group (``key``) or for all of them."""

    kpi: str
    count: int
    amount: Decimal
    key: str | None = None


def kpi_day(at: datetime) -> date:
    """The UTC day a moment falls on: 23:30 at -05:00 is the next day, 01:00 at +05:00 the day before."""
    if at.utcoffset() is None:
        raise ValueError("a KPI's day needs a timezone-aware time")
    return at.astimezone(UTC).date()


def kpi_cell(
    kpi: str,
    at: datetime,
    *,
    source: str | None,
    campaign: str | None,
    team: str | None = None,
    rep_id: str | None = None,
) -> KpiCell:
    """The cell of a KPI at a moment (its UTC day) for the dimensions given; unnamed ones are ``UNKNOWN``."""
    return KpiCell(
        day=kpi_day(at),
        source=source or UNKNOWN,
        campaign=campaign or UNKNOWN,
        team=team or UNKNOWN,
        rep_id=rep_id or UNKNOWN,
        kpi=kpi,
    )


def count_received(lead: LeadReceived) -> KpiIncrement:
    """A received lead counts on the day it was received."""
    return KpiIncrement(kpi_cell("received", lead.received_at, source=lead.source, campaign=lead.campaign))


def count_qualified(mql: LeadQualified, *, time: datetime) -> KpiIncrement:
    """An MQL counts on the day scoring qualified it (the event's time)."""
    return KpiIncrement(kpi_cell("mql", time, source=mql.lead.source, campaign=mql.lead.campaign))


def count_assigned(assignment: LeadAssigned, *, time: datetime) -> KpiIncrement:
    """An assignment counts for its team and rep on the day it was made (the event's time)."""
    return KpiIncrement(
        kpi_cell(
            "assigned",
            time,
            source=assignment.source,
            campaign=assignment.campaign,
            team=assignment.team,
            rep_id=assignment.rep_id,
        )
    )


def count_status_change(change: LeadStatusChanged) -> KpiIncrement:
    """A status (accepted … lost) counts on the day the rep reported it happened; a won deal adds its amount."""
    # handoff closes an erased person's open assignment as lost; that is no verdict of sales, so it counts apart.
    kpi = ERASED_KPI if change.status == "lost" and change.reason == ERASED_REASON else change.status
    cell = kpi_cell(
        kpi,
        change.occurred_at,
        source=change.source,
        campaign=change.campaign,
        team=change.team,
        rep_id=change.rep_id,
    )
    amount = change.amount if change.status == "won" and change.amount is not None else Decimal(0)
    return KpiIncrement(cell, amount=amount)


def rejection_reason_kpi(reason: str | None) -> str:
    """The KPI that counts a rejection by its reason: ``rejected:<reason>``, stripped and cut to fit the column."""
    return (REJECTED_BY_REASON + (reason or "").strip())[:_KPI_LENGTH]


def combine(increments: Iterable[KpiIncrement]) -> list[KpiIncrement]:
    """Adds up increments per cell, in cell order (so concurrent writers lock rows in the same order)."""
    counts: dict[KpiCell, int] = defaultdict(int)
    amounts: dict[KpiCell, Decimal] = defaultdict(Decimal)
    for increment in increments:
        counts[increment.cell] += increment.count
        amounts[increment.cell] += increment.amount
    return [KpiIncrement(cell, count=counts[cell], amount=amounts[cell]) for cell in sorted(counts)]


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator`` to four places; None when there is nothing to divide by."""
    return round(numerator / denominator, 4) if denominator else None


def conversion_rates(totals: KpiTotals) -> ConversionRates:
    """MQL→SAL (accepted per MQL), SAL→SQL (qualified per accepted) and SQL→won (won per qualified)."""
    return ConversionRates(
        mql_to_sal=ratio(totals.accepted, totals.mql),
        sal_to_sql=ratio(totals.qualified, totals.accepted),
        sql_to_won=ratio(totals.won, totals.qualified),
    )


def add_to_totals(totals: KpiTotals, counted: CounterSum) -> None:
    """Adds one KPI's sum to the totals; a KPI the report does not show is left out."""
    if counted.kpi.startswith(REJECTED_BY_REASON):
        reason = counted.kpi[len(REJECTED_BY_REASON) :]
        totals.rejected_by_reason[reason] = totals.rejected_by_reason.get(reason, 0) + counted.count
        return
    if counted.kpi not in COUNTED_KPIS:
        return
    setattr(totals, counted.kpi, getattr(totals, counted.kpi) + counted.count)
    if counted.kpi == "won":
        totals.won_amount += counted.amount


# Distributions: durations counted in fixed log-spaced buckets, so that any set of days, sources,
# campaigns, teams or reps merges by adding bucket counts, and a percentile read from the merged
# buckets is within RELATIVE_ACCURACY of the true one (the mapping DDSketch uses).

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
SMALLEST_DURATION_SECONDS = 0.001
ZERO_BUCKET = -100_000
"""The bucket of durations under a millisecond (and of negative ones, from clocks that disagree)."""

SPEED_TO_LEAD = "speed_to_lead"
TIME_TO_ACCEPT = "time_to_accept"
PIPELINE_STEPS = ("received_to_scored", "scored_to_qualified", "qualified_to_assigned")
PIPELINE = "pipeline:"
"""The prefix of the measures of Baton's own clock: ``pipeline:<step>``."""


@dataclass(frozen=True, order=True)
class DurationCell:
    """Where one duration goes: a measure's bucket on a UTC day for a source, campaign, team and rep."""

    day: date
    source: str
    campaign: str
    team: str
    rep_id: str
    measure: str
    bucket: int


def duration_bucket(duration: timedelta) -> int:
    """The bucket of a duration: ``ceil(log_gamma(seconds))``, or ``ZERO_BUCKET`` under a millisecond."""
    seconds = duration.total_seconds()
    if seconds < SMALLEST_DURATION_SECONDS:
        return ZERO_BUCKET
    return math.ceil(math.log(seconds) / _LOG_GAMMA)


def bucket_seconds(bucket: int) -> float:
    """The duration a bucket stands for: within ``RELATIVE_ACCURACY`` of every duration in it."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return 2 * _GAMMA**bucket / (_GAMMA + 1)


def quantile_seconds(buckets: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0–1) of the durations counted in ``buckets``; None when there are none."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen > rank:
            return bucket_seconds(bucket)
    return bucket_seconds(max(buckets))


def duration_summary(buckets: Mapping[int, int]) -> DurationSummary:
    """p50, p90 and p99 in minutes, to two places, of the durations counted in ``buckets``."""

    def minutes(q: float) -> float | None:
        seconds = quantile_seconds(buckets, q)
        return None if seconds is None else round(seconds / 60, 2)

    return DurationSummary(
        count=sum(buckets.values()), p50_minutes=minutes(0.5), p90_minutes=minutes(0.9), p99_minutes=minutes(0.99)
    )


def sample(
    measure: str,
    duration: timedelta,
    *,
    at: datetime,
    source: str | None = None,
    campaign: str | None = None,
    team: str | None = None,
    rep_id: str | None = None,
) -> DurationCell:
    """One duration of a measure that ended at ``at``, counted on that UTC day."""
    return DurationCell(
        day=kpi_day(at),
        source=source or UNKNOWN,
        campaign=campaign or UNKNOWN,
        team=team or UNKNOWN,
        rep_id=rep_id or UNKNOWN,
        measure=measure,
        bucket=duration_bucket(duration),
    )


# SLA


AT_RISK_SHARE = 0.8
"""An SLA is at risk once this share of the time from assignment to its deadline has gone."""


def sla_met(reported_at: datetime, due_at: datetime) -> bool:
    """An accept or first touch meets its SLA when reported at or before the deadline."""
    return reported_at <= due_at


def at_risk_from(*, started_at: datetime, due_at: datetime) -> datetime:
    """When an SLA becomes at risk: once ``AT_RISK_SHARE`` of the time from its start to its deadline has gone."""
    return started_at + (due_at - started_at) * AT_RISK_SHARE


def sla_state(*, started_at: datetime, due_at: datetime, now: datetime) -> SlaState:
    """``breached`` past the deadline, ``at_risk`` from 80% of the way to it, else ``on_track``."""
    if now > due_at:
        return "breached"
    if now >= at_risk_from(started_at=started_at, due_at=due_at):
        return "at_risk"
    return "on_track"


def sla_compliance(totals: KpiTotals) -> SlaCompliance:
    """Met / (met + breached) for the accept SLA, the touch SLA and both together."""
    return SlaCompliance(
        accept=ratio(totals.accept_sla_met, totals.accept_sla_met + totals.accept_sla_breached),
        touch=ratio(totals.touch_sla_met, totals.touch_sla_met + totals.touch_sla_breached),
        overall=ratio(
            totals.accept_sla_met + totals.touch_sla_met,
            totals.accept_sla_met + totals.touch_sla_met + totals.accept_sla_breached + totals.touch_sla_breached,
        ),
    )


# Money and targets


@dataclass(frozen=True)
class Cost:
    """What a campaign cost."""

    amount: Decimal
    currency: str


def cost_figures(cost: Cost | None, *, mqls: int, won_amount: Decimal) -> CampaignCostFigures | None:
    """Cost per MQL (cost / MQLs) and ROI ((won amount − cost) / cost); None without a cost."""
    if cost is None:
        return None
    return CampaignCostFigures(
        amount=cost.amount,
        currency=cost.currency,
        cost_per_mql=(cost.amount / mqls).quantize(Decimal("0.01")) if mqls else None,
        roi=round(float((won_amount - cost.amount) / cost.amount), 4) if cost.amount else None,
    )


def total_cost(costs: Iterable[Cost]) -> Cost | None:
    """The sum of several campaigns' costs; None when there are none or they are in different currencies."""
    listed = list(costs)
    currencies = {cost.currency for cost in listed}
    if len(currencies) != 1:
        return None
    return Cost(amount=sum((cost.amount for cost in listed), Decimal(0)), currency=currencies.pop())


def _days_in_month(day: date) -> int:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (following - day.replace(day=1)).days


def mqls_target_between(mqls_per_month: int, start: date, end: date) -> float:
    """A monthly MQL target spread over the days of a range: each day brings its month's target / its days."""
    total = 0.0
    day = start
    while day <= end:
        total += mqls_per_month / _days_in_month(day)
        day += timedelta(days=1)
    return round(total, 2)


@dataclass(frozen=True)
class Targets:
    """The targets ops set; None where unset."""

    mqls_per_month: int | None = None
    sla_compliance: float | None = None
    speed_to_lead_minutes: float | None = None


def target_progress(targets: Targets, figures: KpiFigures, *, start: date | None, end: date | None) -> TargetProgress:
    """The report's MQLs, SLA compliance and p50 speed-to-lead against the targets."""
    mqls = figures.totals.mql
    mqls_target = None
    if targets.mqls_per_month is not None and start is not None and end is not None:
        mqls_target = mqls_target_between(targets.mqls_per_month, start, end) if start <= end else 0.0
    compliance = figures.sla_compliance.overall
    speed = figures.speed_to_lead.p50_minutes
    return TargetProgress(
        mqls_target=mqls_target,
        mqls=mqls,
        mqls_attainment=round(mqls / mqls_target, 4) if mqls_target else None,
        sla_compliance_target=targets.sla_compliance,
        sla_compliance_met=(
            None if targets.sla_compliance is None or compliance is None else compliance >= targets.sla_compliance
        ),
        speed_to_lead_minutes_target=targets.speed_to_lead_minutes,
        speed_to_lead_met=(
            None if targets.speed_to_lead_minutes is None or speed is None else speed <= targets.speed_to_lead_minutes
        ),
    )


# The report


@dataclass(frozen=True)
class BucketSum:
    """How many durations of a measure fell in a bucket over a range of days, for one group or for all."""

    measure: str
    bucket: int
    count: int
    key: str | None = None


@dataclass
class _Tally:
    totals: KpiTotals
    durations: dict[str, dict[int, int]]

    @classmethod
    def empty(cls) -> _Tally:
        return cls(KpiTotals(), defaultdict(lambda: defaultdict(int)))

    def figures(self, cost: CampaignCostFigures | None = None) -> KpiFigures:
        return KpiFigures(
            totals=self.totals,
            rates=conversion_rates(self.totals),
            sla_compliance=sla_compliance(self.totals),
            speed_to_lead=duration_summary(self.durations[SPEED_TO_LEAD]),
            time_to_accept=duration_summary(self.durations[TIME_TO_ACCEPT]),
            cost=cost,
        )


def kpi_report(
    sums: Iterable[CounterSum],
    *,
    start: date | None,
    end: date | None,
    group_by: GroupBy | None,
    durations: Iterable[BucketSum] = (),
    targets: Targets = Targets(),
    costs: Mapping[str, Cost] | None = None,
    campaign_sums: Iterable[CounterSum] = (),
) -> KpiReport:
    """The KPI report over a range of days: totals, rates, SLA compliance, speed-to-lead, costs and targets.

    ``costs`` are the known campaign costs; ``campaign_sums`` the counters of those campaigns (by campaign),
    from which the report's overall cost per MQL and ROI are worked out.
    """
    overall = _Tally.empty()
    groups: dict[str, _Tally] = defaultdict(_Tally.empty)
    for counted in sums:
        add_to_totals(overall.totals, counted)
        if group_by is not None and counted.key is not None:
            add_to_totals(groups[counted.key].totals, counted)
    for bucket in durations:
        overall.durations[bucket.measure][bucket.bucket] += bucket.count
        if group_by is not None and bucket.key is not None:
            groups[bucket.key].durations[bucket.measure][bucket.bucket] += bucket.count
    costs = costs or {}
    figures = overall.figures(_overall_cost(costs, campaign_sums))
    return KpiReport(
        **dict(figures),
        from_=start,
        to=end,
        group_by=group_by,
        groups=[
            KpiGroup(
                key=key,
                **dict(
                    tally.figures(
                        cost_figures(costs.get(key), mqls=tally.totals.mql, won_amount=tally.totals.won_amount)
                        if group_by == "campaign"
                        else None
                    )
                ),
            )
            for key, tally in sorted(groups.items())
        ],
        targets=target_progress(targets, figures, start=start, end=end),
    )


def _overall_cost(costs: Mapping[str, Cost], campaign_sums: Iterable[CounterSum]) -> CampaignCostFigures | None:
    cost = total_cost(costs.values())
    if cost is None:
        return None
    mqls = 0
    won_amount = Decimal(0)
    for counted in campaign_sums:
        if counted.key in costs:
            if counted.kpi == "mql":
                mqls += counted.count
            elif counted.kpi == "won":
                won_amount += counted.amount
    return cost_figures(cost, mqls=mqls, won_amount=won_amount)


FUNNEL_STAGES = ("received", "mql", "assigned", "accepted", "contacted", "qualified", "won")


def funnel_stages(totals: KpiTotals) -> list[FunnelStage]:
    """Each funnel stage's count and its share of the stage before (null after a stage nobody reached)."""
    stages: list[FunnelStage] = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        count = getattr(totals, stage)
        stages.append(
            FunnelStage(stage=stage, count=count, from_previous=None if previous is None else ratio(count, previous))
        )
        previous = count
    return stages


def rep_compliance(sums: Iterable[CounterSum]) -> list[RepCompliance]:
    """Each rep's SLAs met and breached (accept and touch together) and the share met, by rep."""
    met: dict[str, int] = defaultdict(int)
    breached: dict[str, int] = defaultdict(int)
    for counted in sums:
        if counted.key is None or counted.key == UNKNOWN:
            continue
        if counted.kpi in ("accept_sla_met", "touch_sla_met"):
            met[counted.key] += counted.count
        elif counted.kpi in ("accept_sla_breached", "touch_sla_breached"):
            breached[counted.key] += counted.count
    return [
        RepCompliance(
            rep_id=rep, met=met[rep], breached=breached[rep], compliance=ratio(met[rep], met[rep] + breached[rep])
        )
        for rep in sorted(set(met) | set(breached))
    ]
