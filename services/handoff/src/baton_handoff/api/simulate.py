"""POST /v1/routing-rules:simulate: what a proposed rule set would have done with recent MQLs (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from baton.web import AdminDep, NowDep, RuntimeDep, SessionDep
from baton_handoff import service, simulate
from baton_handoff.models import RoutingRule
from baton_handoff.routing import Rule, default_rule
from baton_handoff.schemas import RoutingRuleIn
from baton_handoff.settings import HandoffSettings

router = APIRouter(tags=["routing-rules"])


class SimulationIn(BaseModel):
    """A proposed rule set, shaped as /v1/routing-rules holds rules, and how many days of MQLs to replay."""

    model_config = ConfigDict(extra="forbid")

    rules: Annotated[list[RoutingRuleIn], Field(max_length=simulate.MAX_RULES)]
    days: Annotated[int, Field(ge=1, le=365)] = 30


class Window(BaseModel):
    """The time the replayed MQLs were first routed in."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime


class DistributionOut(BaseModel):
    """How many MQLs went to each rep, team (of the rep) and rule, and how many were queued."""

    by_rep: dict[str, int]
    by_team: dict[str, int]
    by_rule: dict[str, int]
    queued: int


class ProposedOut(DistributionOut):
    """The proposed rules' distribution: also the leads that met a rep at capacity, and those no rule matched."""

    capacity_hits: int
    unmatched: int


class RepChange(BaseModel):
    """A rep who would get more or fewer MQLs under the proposed rules."""

    rep_id: str
    actual: int
    proposed: int
    delta: int


class SimulationOut(BaseModel):
    """What the proposed rules would have done with the window's MQLs, beside what actually happened."""

    window: Window
    leads: int
    proposed: ProposedOut
    actual: DistributionOut
    changes: list[RepChange]


def _proposed(rule: RoutingRuleIn) -> Rule:
    # Through the stored shape, so a proposed rule routes exactly as it would once created.
    return service.rule_of(RoutingRule(name=rule.name, **rule.model_dump(mode="json", exclude={"name"})))


@router.post("/v1/routing-rules:simulate")
async def simulate_routing_rules(
    body: SimulationIn, session: SessionDep, runtime: RuntimeDep, now: NowDep, _: AdminDep
) -> SimulationOut:
    """Replays the last ``days`` days of MQLs through the proposed rules against today's reps; assigns nothing."""
    settings = runtime.settings
    assert isinstance(settings, HandoffSettings)
    simulation = await simulate.simulate_rules(
        session,
        rules=[_proposed(rule) for rule in body.rules],
        default=default_rule(service.default_sla_of(settings)),
        days=body.days,
        now=now,
    )
    return SimulationOut(
        window=Window(from_=simulation.window_from, to=simulation.window_to),
        leads=simulation.leads,
        proposed=ProposedOut.model_validate(simulation.proposed.as_dict()),
        actual=DistributionOut.model_validate(simulation.actual.as_dict()),
        changes=[RepChange.model_validate(change) for change in simulation.changes()],
    )
