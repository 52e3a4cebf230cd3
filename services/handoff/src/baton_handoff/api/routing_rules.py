"""/v1/routing-rules: which team gets which leads, by which method, under which SLA (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from baton.web import AdminDep, NowDep, Page, SessionDep, position_cursor
from baton_handoff import service
from baton_handoff.schemas import RoutingRuleBody, RoutingRuleIn, RoutingRuleOut

router = APIRouter(prefix="/v1/routing-rules", tags=["routing rules"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_routing_rule(
    body: RoutingRuleIn, session: SessionDep, now: NowDep, principal: AdminDep
) -> RoutingRuleOut:
    """Adds a routing rule; a name or priority already taken answers 409, a team without reps 422."""
    async with session.begin():
        rule = await service.create_routing_rule(session, rule_in=body, principal=principal, now=now)
    return RoutingRuleOut.model_validate(rule)


@router.get("")
async def list_routing_rules(
    session: SessionDep,
    _: AdminDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[RoutingRuleOut]:
    """Lists routing rules in the order they are tried (ascending priority)."""
    rules = await service.list_routing_rules(session, after=position_cursor(cursor), limit=limit + 1)
    return Page.of(rules, limit=limit, item=RoutingRuleOut.model_validate, cursor=lambda r: str(r.priority))


@router.get("/{name}")
async def get_routing_rule(name: str, session: SessionDep, _: AdminDep) -> RoutingRuleOut:
    """One routing rule."""
    return RoutingRuleOut.model_validate(await service.get_routing_rule(session, name=name))


@router.put("/{name}")
async def replace_routing_rule(
    name: str, body: RoutingRuleBody, session: SessionDep, now: NowDep, principal: AdminDep
) -> RoutingRuleOut:
    """Replaces a routing rule (everything but its name); a priority another rule has answers 409."""
    async with session.begin():
        rule = await service.replace_routing_rule(session, name=name, body=body, principal=principal, now=now)
    return RoutingRuleOut.model_validate(rule)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_routing_rule(name: str, session: SessionDep, now: NowDep, principal: AdminDep) -> Response:
    """Removes a routing rule; the assignments it made keep its name."""
    async with session.begin():
        await service.delete_routing_rule(session, name=name, principal=principal, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
