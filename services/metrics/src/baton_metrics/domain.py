"""The KPI rules, without I/O: which event counts which KPI on which day, and the formulas built on the totals.

KPIs are counted by UTC day, whatever offset the time an event carries was written in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from baton.events import LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged
from baton_metrics.schemas import ConversionRates, GroupBy, KpiGroup, KpiReport, KpiTotals

UNKNOWN = ""
"""The dimension value of a count whose event did not name it (a lead without a campaign, say)."""

COUNTED_KPIS = ("received", "mql", "assigned", "accepted", "rejected", "contacted", "qualified", "won", "lost")


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


def _cell(
    kpi: str,
    at: datetime,
    *,
    source: str | None,
    campaign: str | None,
    team: str | None = None,
    rep_id: str | None = None,
) -> KpiCell:
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
    return KpiIncrement(_cell("received", lead.received_at, source=lead.source, campaign=lead.campaign))


def count_qualified(mql: LeadQualified, *, time: datetime) -> KpiIncrement:
    """An MQL counts on the day scoring qualified it (the event's time)."""
    return KpiIncrement(_cell("mql", time, source=mql.lead.source, campaign=mql.lead.campaign))


def count_assigned(assignment: LeadAssigned, *, time: datetime) -> KpiIncrement:
    """An assignment counts for its team and rep on the day it was made (the event's time)."""
    return KpiIncrement(
        _cell(
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
    cell = _cell(
        change.status,
        change.occurred_at,
        source=change.source,
        campaign=change.campaign,
        team=change.team,
        rep_id=change.rep_id,
    )
    amount = change.amount if change.status == "won" and change.amount is not None else Decimal(0)
    return KpiIncrement(cell, amount=amount)


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
    if counted.kpi not in COUNTED_KPIS:
        return
    setattr(totals, counted.kpi, getattr(totals, counted.kpi) + counted.count)
    if counted.kpi == "won":
        totals.won_amount += counted.amount


def kpi_report(
    sums: Iterable[CounterSum], *, start: date | None, end: date | None, group_by: GroupBy | None
) -> KpiReport:
    """The KPI report over a range of days from the counters' sums: totals and rates, overall and per group."""
    overall = KpiTotals()
    groups: dict[str, KpiTotals] = defaultdict(KpiTotals)
    for counted in sums:
        add_to_totals(overall, counted)
        if group_by is not None and counted.key is not None:
            add_to_totals(groups[counted.key], counted)
    return KpiReport(
        from_=start,
        to=end,
        group_by=group_by,
        totals=overall,
        rates=conversion_rates(overall),
        groups=[
            KpiGroup(key=key, totals=totals, rates=conversion_rates(totals)) for key, totals in sorted(groups.items())
        ],
    )
