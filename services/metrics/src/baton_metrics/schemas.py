"""metrics' request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GroupBy = Literal["source", "campaign", "team", "rep"]
SlaName = Literal["accept", "touch"]
SlaState = Literal["on_track", "at_risk", "breached"]


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
    erased: int = Field(0, description="Open assignments withdrawn because their person asked to be forgotten.")
    won_amount: Decimal = Decimal(0)
    recycled: int = 0
    reassigned: int = 0
    escalated: int = 0
    accept_sla_met: int = 0
    accept_sla_breached: int = 0
    touch_sla_met: int = 0
    touch_sla_breached: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)


class ConversionRates(BaseModel):
    """Funnel conversion between stages; null when the earlier stage is zero."""

    mql_to_sal: float | None
    sal_to_sql: float | None
    sql_to_won: float | None


class SlaCompliance(BaseModel):
    """Share of SLAs met (met / (met + breached)); null when none was decided."""

    accept: float | None = None
    touch: float | None = None
    overall: float | None = None


class DurationSummary(BaseModel):
    """Percentiles of a duration in minutes (within 1%), over ``count`` measurements; null when there are none."""

    count: int = 0
    p50_minutes: float | None = None
    p90_minutes: float | None = None
    p99_minutes: float | None = None


class CampaignCostFigures(BaseModel):
    """What campaigns with a known cost cost, per MQL, and what they returned: (won amount − cost) / cost."""

    amount: Decimal
    currency: str
    cost_per_mql: Decimal | None
    roi: float | None


class KpiFigures(BaseModel):
    """The figures of a report or of one of its groups."""

    totals: KpiTotals
    rates: ConversionRates
    sla_compliance: SlaCompliance = Field(default_factory=SlaCompliance)
    speed_to_lead: DurationSummary = Field(default_factory=DurationSummary)
    time_to_accept: DurationSummary = Field(default_factory=DurationSummary)
    cost: CampaignCostFigures | None = None


class KpiGroup(KpiFigures):
    """The KPIs of one source, campaign, team or rep."""

    key: str


class TargetProgress(BaseModel):
    """The range's results against the targets ops set; null where no target is set (or the range is open)."""

    mqls_target: float | None = None
    mqls: int = 0
    mqls_attainment: float | None = None
    sla_compliance_target: float | None = None
    sla_compliance_met: bool | None = None
    speed_to_lead_minutes_target: float | None = None
    speed_to_lead_met: bool | None = None


class KpiReport(KpiFigures):
    """KPIs over a date range, overall and per group."""

    from_: date | None = Field(serialization_alias="from")
    to: date | None
    group_by: GroupBy | None
    groups: list[KpiGroup]
    targets: TargetProgress = Field(default_factory=TargetProgress)


class FunnelStage(BaseModel):
    """One stage of the funnel: how many reached it, and what share of the stage before."""

    stage: str
    count: int
    from_previous: float | None


class FunnelReport(BaseModel):
    """The funnel over a date range, and where leads left it."""

    from_: date | None = Field(serialization_alias="from")
    to: date | None
    stages: list[FunnelStage]
    rejected: int
    rejected_by_reason: dict[str, int]
    recycled: int
    lost: int


class PipelineStep(BaseModel):
    """How long one step of Baton's own pipeline took, in seconds (within 1%)."""

    step: str
    count: int
    p50_seconds: float | None
    p99_seconds: float | None


class PipelineReport(BaseModel):
    """Baton's own clock over a date range: each step's p50 and p99."""

    from_: date | None = Field(serialization_alias="from")
    to: date | None
    steps: list[PipelineStep]


class OpenSla(BaseModel):
    """An open assignment whose running SLA is at risk or breached."""

    assignment_id: str
    lead_id: str
    rep_id: str
    team: str | None
    sla: SlaName
    state: SlaState
    assigned_at: datetime
    due_at: datetime
    seconds_left: float


class RepCompliance(BaseModel):
    """One rep's SLA compliance over the board's range."""

    rep_id: str
    met: int
    breached: int
    compliance: float | None


class SlaBoard(BaseModel):
    """The live SLA board: open assignments at risk or breached, and per-rep compliance."""

    now: datetime
    open_assignments: int
    at_risk: list[OpenSla]
    breached: list[OpenSla]
    from_: date = Field(serialization_alias="from")
    to: date
    reps: list[RepCompliance]


class JourneyStepOut(BaseModel):
    """One event of a lead's journey, with the time since the step before."""

    event_type: str
    occurred_at: datetime
    seconds_since_previous: float | None
    facts: dict[str, Any]


class Journey(BaseModel):
    """Every event of one lead, in the order they happened."""

    lead_id: str
    steps: list[JourneyStepOut]


class TargetsIn(BaseModel):
    """KPI targets; a field left out keeps its value, null clears it."""

    model_config = ConfigDict(extra="forbid")

    mqls_per_month: int | None = Field(None, ge=0)
    sla_compliance: float | None = Field(None, ge=0, le=1)
    speed_to_lead_minutes: float | None = Field(None, gt=0)


class TargetsOut(BaseModel):
    """The KPI targets in force."""

    mqls_per_month: int | None
    sla_compliance: float | None
    speed_to_lead_minutes: float | None


class CampaignCostIn(BaseModel):
    """What a campaign cost in total, in an ISO 4217 currency."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, max_digits=16, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class CampaignCostOut(CampaignCostIn):
    """A campaign's cost."""

    campaign: str
