"""Reps, accounts and routing rules; routing MQLs into assignments and the fallback queue; what sales tools report."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import bindparam, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, make_transient_to_detached

from baton.auth import Principal
from baton.db import after_commit, dialect_insert, insert_for
from baton.errors import Conflict, Forbidden, NotFound, Unprocessable
from baton.events import LeadAssigned, LeadRecycled, LeadStatusChanged, new_id
from baton.outbox import add_event
from baton_handoff import audit, observability, routing
from baton_handoff.domain import (
    ERASED,
    LEAD_HOLDING_STATUSES,
    OPEN_STATUSES,
    QUEUED,
    InvalidReport,
    check_occurred_at,
    check_transition,
    closes,
)
from baton_handoff.models import (
    OPEN_ASSIGNMENT,
    Account,
    Assignment,
    Rep,
    RepWorkload,
    RoutingCursor,
    RoutingPool,
    RoutingRule,
)
from baton_handoff.schemas import (
    AccountIn,
    AccountOut,
    AccountPatch,
    RepIn,
    RepOut,
    RepPatch,
    RoutingRuleBody,
    RoutingRuleIn,
    RoutingRuleOut,
    SlaPolicyIn,
)
from baton_handoff.settings import HandoffSettings

ROUTING_LOCK = "default"
REASSIGNED = "reassigned"
_ROUTING_TURN_KEY = "baton_handoff_routing_turn"
_DEFAULT_SLA_KEY = "baton_handoff_default_sla"
_SETTINGS_DEFAULT = HandoffSettings.model_fields


def default_sla_of(settings: HandoffSettings) -> routing.SlaPolicy:
    """The SLA of the rule used when no routing rule matches, as the settings give it."""
    return routing.SlaPolicy(
        accept_within=settings.accept_within, touch_within=settings.touch_within, clock=settings.sla_clock
    )


def configure_routing(sessions: async_sessionmaker[AsyncSession], settings: HandoffSettings) -> None:
    """Makes the settings' SLA the default rule's in every session the service opens, whoever routes in it."""
    sessions.configure(info={**sessions.kw.get("info", {}), _DEFAULT_SLA_KEY: default_sla_of(settings)})


def _default_rule(session: AsyncSession) -> routing.Rule:
    policy: routing.SlaPolicy | None = session.info.get(_DEFAULT_SLA_KEY)
    if policy is None:
        policy = routing.SlaPolicy(
            accept_within=_SETTINGS_DEFAULT["accept_within"].default,
            touch_within=_SETTINGS_DEFAULT["touch_within"].default,
            clock=_SETTINGS_DEFAULT["sla_clock"].default,
        )
    return routing.default_rule(policy)


def _refused(detail: str, *, field: str) -> Unprocessable:
    return Unprocessable(detail, errors=[{"loc": ["body", field], "msg": detail, "type": "value_error"}])


async def _team_exists(session: AsyncSession, team: str) -> bool:
    return await session.scalar(select(Rep.rep_id).where(Rep.team == team).limit(1)) is not None


# Reps


def rep_out(rep: Rep) -> dict[str, Any]:
    """A rep as the API and the audit log show it."""
    return RepOut.model_validate(rep).model_dump(mode="json")


async def create_rep(session: AsyncSession, *, rep_in: RepIn, principal: Principal, now: datetime) -> Rep:
    """Adds a rep; a rep_id already taken raises Conflict. Queued leads the rep can take go to them."""
    if await session.get(Rep, rep_in.rep_id) is not None:
        raise Conflict(f"rep {rep_in.rep_id} already exists")
    rep = Rep(**rep_in.model_dump(), created_at=now, updated_at=now)
    session.add(rep)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request added the same rep_id between the look-up and the insert.
        raise Conflict(f"rep {rep_in.rep_id} already exists") from exc
    # Closing an assignment counts down a row that must be there; a rep added again keeps theirs.
    await session.execute(
        insert_for(session)(RepWorkload)
        .values(rep_id=rep.rep_id, open_assignments=0)
        .on_conflict_do_nothing(index_elements=[RepWorkload.rep_id])
    )
    await audit.record_change(
        session, principal=principal, action="create", entity="rep", entity_id=rep.rep_id,
        before=None, after=rep_out(rep), now=now,
    )  # fmt: skip
    await drain_queue(session, now=now)
    return rep


async def list_reps(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Rep]:
    """Up to ``limit`` reps in rep_id order, starting after the rep_id ``after``."""
    query = select(Rep).order_by(Rep.rep_id).limit(limit)
    if after:
        query = query.where(Rep.rep_id > after)
    return (await session.scalars(query)).all()


async def get_rep(session: AsyncSession, *, rep_id: str) -> Rep:
    """One rep; an unknown rep_id raises NotFound."""
    rep = await session.get(Rep, rep_id)
    if rep is None:
        raise NotFound(f"no rep {rep_id}")
    return rep


async def update_rep(
    session: AsyncSession, *, rep_id: str, patch: RepPatch, principal: Principal, now: datetime
) -> Rep:
    """Applies the fields a PATCH names to a rep; queued leads the rep can now take go to them."""
    rep = await get_rep(session, rep_id=rep_id)
    before = rep_out(rep)
    for name, value in patch.model_dump(exclude_unset=True).items():
        setattr(rep, name, value)
    rep.updated_at = now
    await session.flush()
    await audit.record_change(
        session, principal=principal, action="update", entity="rep", entity_id=rep_id,
        before=before, after=rep_out(rep), now=now,
    )  # fmt: skip
    await drain_queue(session, now=now)
    return rep


async def delete_rep(session: AsyncSession, *, rep_id: str, reassign: bool, principal: Principal, now: datetime) -> int:
    """Removes a rep; returns how many open assignments were routed again.

    A rep who holds open assignments is refused with Conflict unless ``reassign``: then each of them
    is closed as reassigned and its lead routed again (attempt + 1, never back to this rep). A rep who
    owns accounts is refused until the accounts have another owner.
    """
    rep = await get_rep(session, rep_id=rep_id)
    owned = await session.scalar(select(func.count()).where(Account.owner_rep_id == rep_id))
    if owned:
        raise Conflict(f"rep {rep_id} owns {owned} account(s); give them another owner first")
    # Locked before the routing lock, as the SLA scheduler does, so the two never wait on each other in a circle.
    held = (
        await session.scalars(
            select(Assignment)
            .where(Assignment.rep_id == rep_id, Assignment.status.in_(OPEN_STATUSES))
            .order_by(Assignment.seq)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    if held and not reassign:
        raise Conflict(
            f"rep {rep_id} holds {len(held)} open assignment(s); "
            "route them to other reps with ?reassign=true or close them first",
            open_assignments=len(held),
        )
    before = rep_out(rep)
    await session.delete(rep)
    await session.flush()
    await audit.record_change(
        session, principal=principal, action="delete", entity="rep", entity_id=rep_id,
        before=before, after=None, now=now,
    )  # fmt: skip
    for assignment in held:
        if not await close_for_reassignment(session, assignment=assignment, expected_status=assignment.status, now=now):
            continue
        await assign_lead(
            session,
            lead_id=assignment.lead_id,
            lead=assignment.lead,
            now=now,
            attempt=assignment.attempt + 1,
            excluded_reps=await reps_who_had(session, lead_id=assignment.lead_id) | {rep_id},
        )
    return len(held)


# Accounts


def account_out(account: Account) -> dict[str, Any]:
    """An account as the API and the audit log show it."""
    return AccountOut.model_validate(account).model_dump(mode="json")


async def _check_owner(session: AsyncSession, owner_rep_id: str) -> None:
    if await session.get(Rep, owner_rep_id) is None:
        raise _refused(f"owner_rep_id {owner_rep_id} is not a rep", field="owner_rep_id")


async def create_account(
    session: AsyncSession, *, account_in: AccountIn, principal: Principal, now: datetime
) -> Account:
    """Adds an account; a domain already taken raises Conflict, an owner who is not a rep Unprocessable."""
    await _check_owner(session, account_in.owner_rep_id)
    if await session.get(Account, account_in.domain) is not None:
        raise Conflict(f"account {account_in.domain} already exists")
    account = Account(**account_in.model_dump(), created_at=now, updated_at=now)
    session.add(account)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"account {account_in.domain} already exists") from exc
    await audit.record_change(
        session, principal=principal, action="create", entity="account", entity_id=account.domain,
        before=None, after=account_out(account), now=now,
    )  # fmt: skip
    return account


async def list_accounts(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Account]:
    """Up to ``limit`` accounts in domain order, starting after the domain ``after``."""
    query = select(Account).order_by(Account.domain).limit(limit)
    if after:
        query = query.where(Account.domain > after)
    return (await session.scalars(query)).all()


async def get_account(session: AsyncSession, *, domain: str) -> Account:
    """One account; an unknown domain raises NotFound."""
    account = await session.get(Account, domain)
    if account is None:
        raise NotFound(f"no account {domain}")
    return account


async def update_account(
    session: AsyncSession, *, domain: str, patch: AccountPatch, principal: Principal, now: datetime
) -> Account:
    """Applies the fields a PATCH names to an account."""
    account = await get_account(session, domain=domain)
    changes = patch.model_dump(exclude_unset=True)
    if "owner_rep_id" in changes:
        await _check_owner(session, changes["owner_rep_id"])
    before = account_out(account)
    for name, value in changes.items():
        setattr(account, name, value)
    account.updated_at = now
    await session.flush()
    await audit.record_change(
        session, principal=principal, action="update", entity="account", entity_id=domain,
        before=before, after=account_out(account), now=now,
    )  # fmt: skip
    return account


async def delete_account(session: AsyncSession, *, domain: str, principal: Principal, now: datetime) -> None:
    """Removes an account; its leads are routed by the rules alone from then on."""
    account = await get_account(session, domain=domain)
    before = account_out(account)
    await session.delete(account)
    await audit.record_change(
        session, principal=principal, action="delete", entity="account", entity_id=domain,
        before=before, after=None, now=now,
    )  # fmt: skip


# Routing rules


def routing_rule_out(rule: RoutingRule) -> dict[str, Any]:
    """A routing rule as the API and the audit log show it."""
    return RoutingRuleOut.model_validate(rule).model_dump(mode="json")


def rule_of(row: RoutingRule) -> routing.Rule:
    """A stored routing rule as routing uses it."""
    sla = SlaPolicyIn.model_validate(row.sla)
    return routing.Rule(
        name=row.name,
        priority=row.priority,
        conditions=tuple(routing.Condition(c["field"], c["op"], c.get("value")) for c in row.conditions),
        team=row.team,
        method=row.method,  # type: ignore[arg-type]  # validated on the way in
        sla=routing.SlaPolicy(accept_within=sla.accept_within, touch_within=sla.touch_within, clock=sla.clock),
        max_attempts=row.max_attempts,
        fallback_team=row.fallback_team,
    )


async def _check_rule(session: AsyncSession, body: RoutingRuleBody, *, name: str) -> None:
    for field_name in ("team", "fallback_team"):
        team = getattr(body, field_name)
        if team is not None and not await _team_exists(session, team):
            raise _refused(f"{field_name} {team} has no reps", field=field_name)
    taken = await session.scalar(
        select(RoutingRule.name).where(RoutingRule.priority == body.priority, RoutingRule.name != name)
    )
    if taken is not None:
        raise Conflict(f"priority {body.priority} is already rule {taken}'s; each rule has a priority of its own")


def _rule_columns(body: RoutingRuleBody) -> dict[str, Any]:
    columns = body.model_dump(mode="json")
    columns.pop("name", None)
    return columns


async def create_routing_rule(
    session: AsyncSession, *, rule_in: RoutingRuleIn, principal: Principal, now: datetime
) -> RoutingRule:
    """Adds a routing rule; a name or priority already taken raises Conflict, a team without reps Unprocessable."""
    await _check_rule(session, rule_in, name=rule_in.name)
    if await session.get(RoutingRule, rule_in.name) is not None:
        raise Conflict(f"routing rule {rule_in.name} already exists")
    rule = RoutingRule(name=rule_in.name, **_rule_columns(rule_in), created_at=now, updated_at=now)
    session.add(rule)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"routing rule {rule_in.name} or priority {rule_in.priority} is already taken") from exc
    await audit.record_change(
        session, principal=principal, action="create", entity="routing_rule", entity_id=rule.name,
        before=None, after=routing_rule_out(rule), now=now,
    )  # fmt: skip
    return rule


async def list_routing_rules(session: AsyncSession, *, after: int | None, limit: int) -> Sequence[RoutingRule]:
    """Up to ``limit`` routing rules in the order they are tried, after the priority ``after``."""
    query = select(RoutingRule).order_by(RoutingRule.priority).limit(limit)
    if after is not None:
        query = query.where(RoutingRule.priority > after)
    return (await session.scalars(query)).all()


async def get_routing_rule(session: AsyncSession, *, name: str) -> RoutingRule:
    """One routing rule; an unknown name raises NotFound."""
    rule = await session.get(RoutingRule, name)
    if rule is None:
        raise NotFound(f"no routing rule {name}")
    return rule


async def replace_routing_rule(
    session: AsyncSession, *, name: str, body: RoutingRuleBody, principal: Principal, now: datetime
) -> RoutingRule:
    """Replaces a routing rule's conditions, team, method, SLA and the rest with ``body``."""
    rule = await get_routing_rule(session, name=name)
    await _check_rule(session, body, name=name)
    before = routing_rule_out(rule)
    for column, value in _rule_columns(body).items():
        setattr(rule, column, value)
    rule.updated_at = now
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"priority {body.priority} is already taken") from exc
    await audit.record_change(
        session, principal=principal, action="update", entity="routing_rule", entity_id=name,
        before=before, after=routing_rule_out(rule), now=now,
    )  # fmt: skip
    return rule


async def delete_routing_rule(session: AsyncSession, *, name: str, principal: Principal, now: datetime) -> None:
    """Removes a routing rule; assignments it made keep its name."""
    rule = await get_routing_rule(session, name=name)
    before = routing_rule_out(rule)
    await session.delete(rule)
    await audit.record_change(
        session, principal=principal, action="delete", entity="routing_rule", entity_id=name,
        before=before, after=None, now=now,
    )  # fmt: skip


# Routing


@dataclass
class _RoutingTurn:
    """The routing lock held by one transaction, with what it read under it and what it changed.

    While the lock is held only this transaction routes, so the rules, accounts, reps, open counts and
    rotations read at its start stay right for every lead it routes once its own changes are counted
    in. The rotations and the counts it moved are written once, just before the transaction commits.
    """

    transaction: object
    rules: list[routing.Rule]
    default: routing.Rule
    accounts: dict[str, str]
    reps: dict[str, routing.RepView]
    pools: dict[str, routing.PoolState]
    stored_pools: dict[str, routing.PoolState]
    opened: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, routing.PoolState]:
        return {name: replace(state, current_weights=dict(state.current_weights)) for name, state in self.pools.items()}

    def count(self, rep_id: str, change: int) -> None:
        self.opened[rep_id] += change
        rep = self.reps.get(rep_id)
        if rep is not None:
            self.reps[rep_id] = replace(rep, open_assignments=rep.open_assignments + change)


def _current_turn(session: AsyncSession | Session) -> _RoutingTurn | None:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    turn: _RoutingTurn | None = sync.info.get(_ROUTING_TURN_KEY)
    if turn is not None and turn.transaction is sync.get_transaction():
        return turn
    return None


async def hold_routing_lock(session: AsyncSession) -> None:
    """Takes the routing lock (see ``assign_lead``) for the rest of the transaction, unless it holds it already."""
    await _take_routing_turn(session)


async def _take_routing_turn(session: AsyncSession) -> _RoutingTurn:
    turn = _current_turn(session)
    if turn is not None:
        return turn
    lock = select(RoutingCursor.name).where(RoutingCursor.name == ROUTING_LOCK).with_for_update()
    if (await session.execute(lock)).one_or_none() is None:
        await session.execute(
            insert_for(session)(RoutingCursor)
            .values(name=ROUTING_LOCK, last_rep_id=None)
            .on_conflict_do_nothing(index_elements=[RoutingCursor.name])
        )
        (await session.execute(lock)).one()
    rules = [rule_of(row) for row in await session.scalars(select(RoutingRule).order_by(RoutingRule.priority))]
    accounts: dict[str, str] = {}
    if any(rule.method == "account_owner" for rule in rules):
        accounts = dict((await session.execute(select(Account.domain, Account.owner_rep_id))).all())
    reps = await session.execute(
        select(Rep, func.coalesce(RepWorkload.open_assignments, 0))
        .outerjoin(RepWorkload, RepWorkload.rep_id == Rep.rep_id)
        .order_by(Rep.rep_id)
    )
    pools = {
        name: routing.PoolState(last_rep_id=last_rep_id, current_weights=dict(weights or {}))
        for name, last_rep_id, weights in await session.execute(
            select(RoutingPool.name, RoutingPool.last_rep_id, RoutingPool.current_weights)
        )
    }
    turn = _RoutingTurn(
        transaction=session.sync_session.get_transaction(),
        rules=rules,
        default=_default_rule(session),
        accounts=accounts,
        reps={rep.rep_id: rep_view(rep, held) for rep, held in reps},
        pools=pools,
        stored_pools={},
    )
    turn.stored_pools = turn.snapshot()
    session.info[_ROUTING_TURN_KEY] = turn
    return turn


def rep_view(rep: Rep, open_assignments: int) -> routing.RepView:
    """A rep as routing sees them, holding ``open_assignments``."""
    return routing.RepView(
        rep_id=rep.rep_id,
        team=rep.team,
        territories=frozenset(rep.territories),
        segments=frozenset(rep.segments),
        weight=rep.weight,
        capacity=rep.capacity,
        open_assignments=open_assignments,
        timezone=rep.timezone,
        working_hours=rep.working_hours,
        status=rep.status,
        ooo_until=rep.ooo_until,
    )


@event.listens_for(Session, "before_commit")
def _write_routing_turn(session: Session) -> None:
    turn = _current_turn(session)
    session.info.pop(_ROUTING_TURN_KEY, None)
    if turn is None:
        return
    moved = [
        {"name": name, "last_rep_id": state.last_rep_id, "current_weights": state.current_weights}
        for name, state in sorted(turn.pools.items())
        if turn.stored_pools.get(name) != state
    ]
    if moved:
        pools = insert_for(session)(RoutingPool).values(moved)
        session.execute(
            pools.on_conflict_do_update(
                index_elements=[RoutingPool.name],
                set_={"last_rep_id": pools.excluded.last_rep_id, "current_weights": pools.excluded.current_weights},
            )
        )
    opened = sorted((rep_id, n) for rep_id, n in turn.opened.items() if n > 0)
    if opened:
        counts = insert_for(session)(RepWorkload).values([{"rep_id": r, "open_assignments": n} for r, n in opened])
        session.execute(
            counts.on_conflict_do_update(
                index_elements=[RepWorkload.rep_id],
                set_={"open_assignments": RepWorkload.open_assignments + counts.excluded.open_assignments},
            )
        )
    # A row proposed for insert must pass the count's check before its conflict turns it into an update,
    # so counts that went down (every rep has a row) are updated in place.
    for rep_id, n in sorted((rep_id, n) for rep_id, n in turn.opened.items() if n < 0):
        session.execute(
            update(RepWorkload)
            .where(RepWorkload.rep_id == rep_id)
            .values(open_assignments=RepWorkload.open_assignments + n)
            .execution_options(synchronize_session=False)
        )


async def _count_closed(session: AsyncSession, rep_id: str) -> None:
    turn = _current_turn(session)
    if turn is not None:
        turn.count(rep_id, -1)
        return
    await session.execute(
        update(RepWorkload)
        .where(RepWorkload.rep_id == rep_id)
        .values(open_assignments=RepWorkload.open_assignments - 1)
        .execution_options(synchronize_session=False)
    )


async def _open_assignment_of(session: AsyncSession, lead_id: str) -> Assignment:
    found = await session.scalar(
        select(Assignment).where(Assignment.lead_id == lead_id, Assignment.status.in_(LEAD_HOLDING_STATUSES))
    )
    if found is None:  # it closed between the refused insert and this look-up: it was there, so say so
        raise Conflict(f"lead {lead_id} already had an open assignment")
    return found


@cache
def _insert_assignment_statement(dialect: str) -> Any:
    # Built once per dialect with a parameter per column: building and coercing a statement for every
    # lead cost more CPU than the insert itself. Core, not ORM: nothing here needs the unit of work.
    assignments = Assignment.__table__
    insert = dialect_insert(dialect)
    columns = [column for column in assignments.c if column.name != "seq"]
    return (
        insert(assignments)
        .values({column.name: bindparam(column.name, type_=column.type) for column in columns})
        .on_conflict_do_nothing(index_elements=[assignments.c.lead_id], index_where=OPEN_ASSIGNMENT)
        .returning(assignments.c.seq)
    )


async def _insert_assignment(session: AsyncSession, values: dict[str, Any]) -> Assignment | None:
    """Inserts an assignment unless its lead holds an open or queued one; returns it as a session object."""
    statement = _insert_assignment_statement(session.get_bind().dialect.name)
    with session.no_autoflush:
        seq = await session.scalar(statement, values)
    if seq is None:
        return None
    # Known without reading it back: the row is what was just written.
    assignment = Assignment(seq=seq, **values)
    make_transient_to_detached(assignment)
    session.add(assignment)
    return assignment


def _assignment_values(
    *,
    lead_id: str,
    lead: Mapping[str, Any],
    decision: routing.RoutingDecision,
    rep: routing.RepView | None,
    team: str | None,
    attempt: int,
    escalated: bool,
    now: datetime,
) -> dict[str, Any]:
    deadlines = routing.sla_deadlines(now, decision.sla, rep) if rep is not None else None
    return {
        "id": new_id(),
        "lead_id": lead_id,
        "rep_id": rep.rep_id if rep is not None else None,
        "team": team,
        "rule": decision.rule,
        "attempt": attempt,
        "status": "assigned" if rep is not None else QUEUED,
        "lead": dict(lead),
        "decision": decision.as_dict(),
        "reason": None,
        "amount": None,
        "accept_due_at": deadlines.accept_due_at if deadlines else None,
        "touch_due_at": deadlines.touch_due_at if deadlines else None,
        "accept_at_risk_at": deadlines.accept_at_risk_at if deadlines else None,
        "touch_at_risk_at": deadlines.touch_at_risk_at if deadlines else None,
        "sla_clock": decision.sla.clock,
        "max_attempts": decision.max_attempts,
        "fallback_team": decision.fallback_team,
        "escalated": escalated,
        "created_at": now,
        "updated_at": now,
    }


def _publish_assigned(session: AsyncSession, assignment: Assignment, *, method: str, seconds: float) -> None:
    assert assignment.rep_id is not None and assignment.accept_due_at and assignment.touch_due_at
    add_event(
        session,
        LeadAssigned(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rep_id=assignment.rep_id,
            team=assignment.team,
            source=assignment.lead.get("source"),
            campaign=assignment.lead.get("campaign"),
            rule=assignment.rule,
            attempt=assignment.attempt,
            accept_due_at=assignment.accept_due_at,
            touch_due_at=assignment.touch_due_at,
        ),
    )
    rule = assignment.rule
    after_commit(session, lambda: observability.routed(rule=rule, method=method, seconds=seconds))


async def assign_lead(
    session: AsyncSession,
    *,
    lead_id: str,
    lead: dict[str, Any],
    now: datetime,
    attempt: int = 1,
    excluded_reps: frozenset[str] = frozenset(),
    action_if_none: str | None = None,
) -> Assignment:
    """Routes a lead by the routing rules and returns its assignment, queued when nobody can take it.

    The routing lock (the cursor row) is taken first and held for the rest of the transaction, so
    concurrent routings (several replicas included) see each other's assignments: no lead gets two,
    no rep goes over capacity, rotations stay even. Several leads may be routed one after another in
    one transaction. A lead that already holds an open or queued assignment keeps it, and that one is
    returned. ``action_if_none="escalated"`` marks a queued assignment as an escalation.
    """
    started = time.perf_counter()
    turn = await _take_routing_turn(session)
    before = turn.snapshot()
    decision = routing.route(
        lead,
        rules=turn.rules,
        default=turn.default,
        reps=turn.reps,
        pools=turn.pools,
        accounts=turn.accounts,
        now=now,
        excluded_reps=excluded_reps,
    )
    if decision.chosen is None:
        return await _queue(
            session,
            lead_id=lead_id,
            lead=lead,
            team=decision.fallback_team or decision.team,
            attempt=attempt,
            decision=decision,
            escalated=action_if_none == "escalated",
            now=now,
        )
    rep = turn.reps[decision.chosen]
    values = _assignment_values(
        lead_id=lead_id, lead=lead, decision=decision, rep=rep, team=rep.team, attempt=attempt, escalated=False, now=now
    )
    assignment = await _insert_assignment(session, values)
    if assignment is None:
        turn.pools = before  # the lead was not routed after all: its rotation does not move
        return await _open_assignment_of(session, lead_id)
    turn.count(rep.rep_id, +1)
    _publish_assigned(session, assignment, method=decision.method, seconds=time.perf_counter() - started)
    return assignment


def _why_queued(decision: routing.RoutingDecision, team: str | None) -> None:
    queue = f"the {team} queue" if team else "the queue"
    reason = f"nobody in {f'team {decision.team}' if decision.team else 'any team'} can take it now; waits in {queue}"
    decision.note = f"{decision.note}; {reason}" if decision.note else reason


async def _queue(
    session: AsyncSession,
    *,
    lead_id: str,
    lead: Mapping[str, Any],
    team: str | None,
    attempt: int,
    decision: routing.RoutingDecision,
    escalated: bool,
    now: datetime,
) -> Assignment:
    _why_queued(decision, team)
    values = _assignment_values(
        lead_id=lead_id,
        lead=lead,
        decision=decision,
        rep=None,
        team=team,
        attempt=attempt,
        escalated=escalated,
        now=now,
    )
    return await _insert_assignment(session, values) or await _open_assignment_of(session, lead_id)


async def queue_lead(
    session: AsyncSession,
    *,
    lead_id: str,
    lead: dict[str, Any],
    team: str | None,
    rule: str,
    attempt: int,
    decision: dict[str, Any],
    now: datetime,
) -> Assignment:
    """Puts a lead in ``team``'s fallback queue (no rep, no deadlines), keeping ``decision``; publishes nothing.

    A lead that already holds an open or queued assignment keeps it, and that one is returned.
    """
    sla = SlaPolicyIn.model_validate(decision.get("sla") or _default_rule(session).sla.as_dict())
    values = {
        "id": new_id(),
        "lead_id": lead_id,
        "rep_id": None,
        "team": team,
        "rule": rule,
        "attempt": attempt,
        "status": QUEUED,
        "lead": dict(lead),
        "decision": decision,
        "reason": None,
        "amount": None,
        "accept_due_at": None,
        "touch_due_at": None,
        "accept_at_risk_at": None,
        "touch_at_risk_at": None,
        "sla_clock": sla.clock,
        "max_attempts": decision.get("max_attempts", 3),
        "fallback_team": decision.get("fallback_team"),
        "escalated": False,
        "created_at": now,
        "updated_at": now,
    }
    return await _insert_assignment(session, values) or await _open_assignment_of(session, lead_id)


async def close_for_reassignment(
    session: AsyncSession, *, assignment: Assignment, expected_status: str, now: datetime
) -> bool:
    """Closes an assignment as reassigned if it is still ``expected_status``; frees its rep's capacity.

    Takes the routing lock first: the lead is routed again next, and the freed capacity is counted
    with the routing's own changes.
    """
    await _take_routing_turn(session)
    moved = await session.scalar(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == expected_status)
        .values(status=REASSIGNED, updated_at=now)
        .returning(Assignment.id)
    )
    if moved is None:
        return False
    if expected_status in OPEN_STATUSES and assignment.rep_id is not None:
        await _count_closed(session, assignment.rep_id)
    return True


async def reps_who_had(session: AsyncSession, *, lead_id: str) -> frozenset[str]:
    """Every rep the lead was ever assigned to."""
    rows = await session.scalars(
        select(Assignment.rep_id).where(Assignment.lead_id == lead_id, Assignment.rep_id.is_not(None)).distinct()
    )
    return frozenset(rep_id for rep_id in rows if rep_id is not None)


async def _queue_is_waiting(session: AsyncSession) -> bool:
    return await session.scalar(select(Assignment.seq).where(Assignment.status == QUEUED).limit(1)) is not None


def _queue_rule(assignment: Assignment, turn: _RoutingTurn) -> routing.Rule:
    """The rule a queued lead is handed out by: round robin over its queue's team, with its rule's SLA."""
    decision = assignment.decision or {}
    sla = SlaPolicyIn.model_validate(decision["sla"]) if decision.get("sla") else None
    policy = (
        routing.SlaPolicy(accept_within=sla.accept_within, touch_within=sla.touch_within, clock=sla.clock)
        if sla
        else turn.default.sla
    )
    return routing.Rule(
        name=f"queue:{assignment.team}" if assignment.team else "queue",
        priority=0,
        conditions=(),
        team=assignment.team,
        method="round_robin",
        sla=policy,
        max_attempts=assignment.max_attempts,
        fallback_team=assignment.fallback_team,
    )


async def drain_queue(session: AsyncSession, *, now: datetime, limit: int = 100) -> int:
    """Hands queued leads, oldest first, to reps of their queue's team who can take them now; returns how many.

    Each goes round robin over the team, never to a rep who had the lead before; one nobody can take
    stays queued. Rows another transaction holds are skipped, so replicas drain side by side.
    """
    if not await _queue_is_waiting(session):
        return 0
    turn = await _take_routing_turn(session)
    queued = (
        await session.scalars(
            select(Assignment)
            .where(Assignment.status == QUEUED)
            .order_by(Assignment.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    ).all()
    if not queued:
        return 0
    had: dict[str, set[str]] = {}
    for lead_id, rep_id in await session.execute(
        select(Assignment.lead_id, Assignment.rep_id).where(
            Assignment.lead_id.in_({a.lead_id for a in queued}), Assignment.rep_id.is_not(None)
        )
    ):
        if rep_id is not None:
            had.setdefault(lead_id, set()).add(rep_id)
    handed = 0
    for assignment in queued:
        started = time.perf_counter()
        rule = _queue_rule(assignment, turn)
        before = turn.snapshot()
        decision = routing.route(
            assignment.lead,
            rules=(),
            default=rule,
            reps=turn.reps,
            pools=turn.pools,
            accounts={},
            now=now,
            excluded_reps=frozenset(had.get(assignment.lead_id, ())),
        )
        if decision.chosen is None:
            turn.pools = before
            continue
        decision.rule = assignment.rule
        decision.note = f"handed out from the {assignment.team or 'shared'} queue as a rep became free"
        if await _hand_out(session, assignment, turn.reps[decision.chosen], decision=decision.as_dict(), now=now):
            turn.count(decision.chosen, +1)
            _publish_assigned(session, assignment, method="queue", seconds=time.perf_counter() - started)
            handed += 1
        else:
            turn.pools = before
    return handed


async def _hand_out(
    session: AsyncSession, assignment: Assignment, rep: routing.RepView, *, decision: dict[str, Any], now: datetime
) -> bool:
    sla = SlaPolicyIn.model_validate(decision["sla"])
    deadlines = routing.sla_deadlines(
        now, routing.SlaPolicy(accept_within=sla.accept_within, touch_within=sla.touch_within, clock=sla.clock), rep
    )
    changes = {
        "status": "assigned",
        "rep_id": rep.rep_id,
        "team": rep.team,
        "decision": decision,
        "accept_due_at": deadlines.accept_due_at,
        "touch_due_at": deadlines.touch_due_at,
        "accept_at_risk_at": deadlines.accept_at_risk_at,
        "touch_at_risk_at": deadlines.touch_at_risk_at,
        "sla_clock": sla.clock,
        "updated_at": now,
    }
    # Only one of two concurrent hand-outs (a team lead's and the drain) still finds it queued.
    moved = await session.scalar(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == QUEUED)
        .values(changes)
        .returning(Assignment.id)
    )
    return moved is not None


async def hand_out(
    session: AsyncSession, *, assignment: Assignment, rep_id: str, principal: Principal, now: datetime
) -> None:
    """Hands a queued lead to a rep by hand (an admin, or the lead of the queue's team).

    Raises Forbidden for anyone else, Unprocessable for an unknown rep, Conflict when the rep is at
    capacity or the lead is no longer queued.
    """
    if "admin" not in principal.scopes and not (principal.rep_id is None and principal.team == assignment.team):
        raise Forbidden("only an admin or the lead of the queue's team hands out queued leads")
    if assignment.status != QUEUED:
        raise Conflict(f"assignment {assignment.id} is {assignment.status}, not queued: it was handed out already")
    turn = await _take_routing_turn(session)
    rep = turn.reps.get(rep_id)
    if rep is None:
        raise _refused(f"rep_id {rep_id} is not a rep", field="rep_id")
    if "admin" not in principal.scopes and rep.team != principal.team:
        raise _refused(f"rep_id {rep_id} is not in team {principal.team}", field="rep_id")
    if rep.open_assignments >= rep.capacity:
        raise Conflict(f"rep {rep_id} is at capacity ({rep.open_assignments}/{rep.capacity})")
    before = {"status": assignment.status, "rep_id": None, "team": assignment.team}
    stored = assignment.decision or {}
    decision = {
        **stored,
        "method": "manual",
        "team": rep.team,
        "chosen": rep_id,
        "candidates": [
            {"rep_id": rep_id, "team": rep.team, "outcome": "chosen", "reason": f"handed out by {principal.subject}"}
        ],
        "note": f"handed out from the {assignment.team or 'shared'} queue by {principal.subject}",
        "sla": stored.get("sla") or turn.default.sla.as_dict(),
        "decided_at": now.isoformat(),
    }
    if not await _hand_out(session, assignment, rep, decision=decision, now=now):
        raise Conflict(f"assignment {assignment.id} is no longer queued: it was handed out already")
    turn.count(rep_id, +1)
    _publish_assigned(session, assignment, method="manual", seconds=0.0)
    await audit.record_change(
        session, principal=principal, action="update", entity="assignment", entity_id=assignment.id,
        before=before, after={"status": "assigned", "rep_id": rep_id, "team": rep.team}, now=now,
    )  # fmt: skip


# What sales tools report


async def list_assignments(
    session: AsyncSession,
    *,
    rep_id: str | None,
    team: str | None,
    status: str | None,
    updated_since: datetime | None,
    after: int | None,
    limit: int,
) -> Sequence[Assignment]:
    """Up to ``limit`` assignments in the order they were made, after position ``after``, filtered."""
    query = select(Assignment).order_by(Assignment.seq).limit(limit)
    if rep_id is not None:
        query = query.where(Assignment.rep_id == rep_id)
    if team is not None:
        query = query.where(Assignment.team == team)
    if status is not None:
        query = query.where(Assignment.status == status)
    if updated_since is not None:
        query = query.where(Assignment.updated_at >= updated_since)
    if after is not None:
        query = query.where(Assignment.seq > after)
    return (await session.scalars(query)).all()


async def get_assignment(session: AsyncSession, *, assignment_id: str, for_update: bool = False) -> Assignment | None:
    """One assignment, or None; ``for_update`` locks its row until the transaction ends."""
    query = select(Assignment).where(Assignment.id == assignment_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def record_status(
    session: AsyncSession,
    *,
    assignment: Assignment,
    status: str,
    reason: str | None,
    amount: Decimal | None,
    occurred_at: datetime | None,
    now: datetime,
    reject_reasons: Sequence[str],
) -> None:
    """Moves an assignment to a new status and publishes lead.status_changed (and lead.recycled on a rejection).

    Illegal moves, and a status that changed since ``assignment`` was read, raise Conflict; an
    ``occurred_at`` in the future or before the assignment, or a rejection without one of
    ``reject_reasons``, raise InvalidReport. Capacity it frees goes to the oldest queued lead that fits.
    """
    check_transition(assignment.status, status)
    if status == "rejected" and reason not in reject_reasons:
        raise InvalidReport(f"a rejection needs a reason, one of: {', '.join(reject_reasons)}", field="reason")
    occurred_at = occurred_at or now
    check_occurred_at(occurred_at, assigned_at=assignment.created_at, now=now)
    drains = await _move(
        session, assignment=assignment, status=status, reason=reason, amount=amount, occurred_at=occurred_at, now=now
    )
    if status == "rejected" and reason is not None:
        add_event(session, LeadRecycled(lead_id=assignment.lead_id, reason=reason))
    if drains:
        await drain_queue(session, now=now)


async def close_as_erased(session: AsyncSession, *, assignment: Assignment, now: datetime) -> None:
    """Closes an open or queued assignment of an erased lead as lost, publishing lead.status_changed.

    Whatever its status, the lead is gone: the rep's capacity it held goes to the oldest queued lead that fits.
    """
    drains = await _move(
        session, assignment=assignment, status="lost", reason=ERASED, amount=None, occurred_at=now, now=now
    )
    if drains:
        await drain_queue(session, now=now)


async def _move(
    session: AsyncSession,
    *,
    assignment: Assignment,
    status: str,
    reason: str | None,
    amount: Decimal | None,
    occurred_at: datetime,
    now: datetime,
) -> bool:
    """Moves an assignment from the status it was read in and publishes lead.status_changed; frees its rep's capacity.

    Returns whether the queue waits for the capacity this freed (the caller drains it once done).
    """
    current = assignment.status
    frees = closes(current, status) and assignment.rep_id is not None
    # With leads waiting, the freed capacity is handed on under the routing lock, taken before the
    # rep's count is touched so that this never waits for the lock while holding what routing writes.
    drains = frees and await _queue_is_waiting(session)
    if drains:
        await _take_routing_turn(session)
    changes: dict[str, Any] = {"status": status, "reason": reason, "updated_at": now}
    if amount is not None:
        changes["amount"] = amount
    # Only one of two concurrent reports can still find the status it was checked against.
    moved = await session.scalar(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == current)
        .values(changes)
        .returning(Assignment.id)
    )
    if moved is None:
        raise Conflict(f"assignment {assignment.id} is no longer {current}: another report changed it first")
    if frees and assignment.rep_id is not None:
        await _count_closed(session, assignment.rep_id)
    add_event(
        session,
        LeadStatusChanged(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rep_id=assignment.rep_id or "",
            team=assignment.team,
            source=assignment.lead.get("source"),
            campaign=assignment.lead.get("campaign"),
            status=status,
            reason=reason,
            amount=amount,
            occurred_at=occurred_at,
        ),
    )
    return drains
