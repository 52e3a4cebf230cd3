"""Reading the KPI totals back out."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton_metrics.models import KpiCounter
from baton_metrics.schemas import ConversionRates, GroupBy, KpiGroup, KpiReport, KpiTotals

_GROUP_COLUMNS = {
    "source": KpiCounter.source,
    "campaign": KpiCounter.campaign,
    "team": KpiCounter.team,
    "rep": KpiCounter.rep_id,
}


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def conversion_rates(totals: KpiTotals) -> ConversionRates:
    """MQL→SAL (accepted), SAL→SQL (qualified) and SQL→won."""
    return ConversionRates(
        mql_to_sal=_ratio(totals.accepted, totals.mql),
        sal_to_sql=_ratio(totals.qualified, totals.accepted),
        sql_to_won=_ratio(totals.won, totals.qualified),
    )


async def kpi_report(
    session: AsyncSession, *, start: date | None, end: date | None, group_by: GroupBy | None
) -> KpiReport:
    """Adds up the counters between two days (inclusive), overall and per group."""
    key_column = _GROUP_COLUMNS[group_by] if group_by else None
    columns = [KpiCounter.kpi, func.sum(KpiCounter.count), func.sum(KpiCounter.amount)]
    query = select(*columns, *([key_column] if key_column is not None else [])).group_by(
        KpiCounter.kpi, *([key_column] if key_column is not None else [])
    )
    if start is not None:
        query = query.where(KpiCounter.day >= start)
    if end is not None:
        query = query.where(KpiCounter.day <= end)
    overall = KpiTotals()
    groups: dict[str, KpiTotals] = defaultdict(KpiTotals)
    for row in (await session.execute(query)).all():
        kpi, counted, amount = str(row[0]), int(str(row[1] or 0)), Decimal(str(row[2] or 0))
        targets = [overall] + ([groups[str(row[3])]] if key_column is not None else [])
        for totals in targets:
            if kpi in KpiTotals.model_fields and kpi != "won_amount":
                setattr(totals, kpi, getattr(totals, kpi) + counted)
            if kpi == "won":
                totals.won_amount += amount
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
