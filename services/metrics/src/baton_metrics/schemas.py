"""metrics' response bodies."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

GroupBy = Literal["source", "campaign", "team", "rep"]


class KpiTotals(BaseModel):
    """Counts of each KPI, and the won amount."""

    received: int = 0
    mql: int = 0
    assigned: int = 0
    accepted: int = 0
    rejected: int = 0
    contacted: int = 0
    qualified: int = 0
    won: int = 0
    lost: int = 0
    won_amount: Decimal = Decimal(0)


class ConversionRates(BaseModel):
    """Funnel conversion between stages; null when the earlier stage is zero."""

    mql_to_sal: float | None
    sal_to_sql: float | None
    sql_to_won: float | None


class KpiGroup(BaseModel):
    """The KPIs of one source, campaign, team or rep."""

    key: str
    totals: KpiTotals
    rates: ConversionRates


class KpiReport(BaseModel):
    """KPIs over a date range, overall and per group."""

    from_: date | None = Field(serialization_alias="from")
    to: date | None
    group_by: GroupBy | None
    totals: KpiTotals
    rates: ConversionRates
    groups: list[KpiGroup]
