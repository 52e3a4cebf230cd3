"""What-if: the MQLs of the last days replayed through a proposed rule set against today's reps, writing nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from baton.errors import Unprocessable
from baton_handoff.business_hours import WorkingHours, shifts_between
from baton_handoff.models import Account, Assignment, Rep, RepWorkload
from baton_handoff.routing import PoolState, RepView, Rule, lead_attributes, route
from baton_handoff.service import rep_view

MAX_REPLAYED_LEADS = 50_000
"""More MQLs than this in the window would hold a request too long: the caller asks for fewer days."""
MAX_RULES = 200
_AT_CAPACITY = "at capacity ("
"""What routing says of a rep it skips because they hold as many open assignments as they may."""


@dataclass
class Distribution:
    """Where a set of MQLs went: per rep, per team (of the rep who got it), per rule, and how many were queued."""

    by_rep: Counter[str] = field(default_factory=Counter)
    by_team: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    queued: int = 0

    def count(self, *, rule: str, rep_id: str | None, team: str | None) -> None:
        """Counts one MQL routed by ``rule`` to ``rep_id`` (of ``team``), or queued when ``rep_id`` is None."""
        self.by_rule[rule] += 1
        if rep_id is None:
            self.queued += 1
            return
        self.by_rep[rep_id] += 1
        if team is not None:
            self.by_team[team] += 1

    def as_dict(self) -> dict[str, Any]:
        """The distribution as the simulation answers it, keys sorted."""
        return {
            "by_rep": dict(sorted(self.by_rep.items())),
            "by_team": dict(sorted(self.by_team.items())),
            "by_rule": dict(sorted(self.by_rule.items())),
            "queued": self.queued,
        }


@dataclass
class ProposedDistribution(Distribution):
    """Where the proposed rules would have sent the MQLs, with the leads that met a full rep or no rule."""

    capacity_hits: int = 0
    unmatched: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The distribution as the simulation answers it, with its capacity hits and unmatched leads."""
        return {**super().as_dict(), "capacity_hits": self.capacity_hits, "unmatched": self.unmatched}


@dataclass(frozen=True)
class Simulation:
    """What the proposed rules would have done with the window's MQLs, beside what actually happened."""

    window_from: datetime
    window_to: datetime
    leads: int
    proposed: ProposedDistribution
    actual: Distribution

    def changes(self) -> list[dict[str, Any]]:
        """Each rep whose count would change, the largest change first."""
        reps = self.proposed.by_rep.keys() | self.actual.by_rep.keys()
        moved = [
            {
                "rep_id": rep_id,
                "actual": self.actual.by_rep[rep_id],
                "proposed": self.proposed.by_rep[rep_id],
                "delta": self.proposed.by_rep[rep_id] - self.actual.by_rep[rep_id],
            }
            for rep_id in reps
        ]
        return sorted((c for c in moved if c["delta"]), key=lambda c: (-abs(c["delta"]), c["rep_id"]))


@dataclass(frozen=True)
class _Replayed:
    """An MQL's first assignment as it happened."""

    lead: dict[str, Any]
    created_at: datetime
    rep_id: str | None
    team: str | None
    rule: str


class _RuleRefused(Unprocessable):
    def __init__(self, detail: str, *, index: int, field: str) -> None:
        super().__init__(
            detail, errors=[{"loc": ["body", "rules", index, field], "msg": detail, "type": "value_error"}]
        )


async def simulate_rules(
    session: AsyncSession, *, rules: Sequence[Rule], default: Rule, days: int, now: datetime
) -> Simulation:
    """Replays the MQLs first routed in the last ``days`` days through ``rules``, against today's reps; writes nothing.

    Everything is read in one read-only transaction that is rolled back; the replay itself runs in
    a worker thread, so a long one does not hold up the service's other requests and consumers.
    """
    window_from = now - timedelta(days=days)
    try:
        await _begin_read_only(session)
        reps = await _rep_views(session)
        _check_rules(rules, teams={rep.team for rep in reps.values() if rep.team is not None})
        replayed = await _first_assignments(session, window_from=window_from, window_to=now)
        accounts = await _account_owners(session, rules)
    finally:
        await session.rollback()
    proposed = await asyncio.to_thread(_replay, replayed, rules=rules, default=default, reps=reps, accounts=accounts)
    actual = Distribution()
    for mql in replayed:
        actual.count(rule=mql.rule, rep_id=mql.rep_id, team=mql.team)
    return Simulation(window_from=window_from, window_to=now, leads=len(replayed), proposed=proposed, actual=actual)


async def _begin_read_only(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # One snapshot for reps, counts and assignments; and the database itself refuses any write.
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


def _check_rules(rules: Sequence[Rule], *, teams: set[str]) -> None:
    names: set[str] = set()
    priorities: set[int] = set()
    for index, rule in enumerate(rules):
        if rule.name in names:
            raise _RuleRefused(f"two proposed rules are named {rule.name}", index=index, field="name")
        if rule.priority in priorities:
            raise _RuleRefused(f"two proposed rules have priority {rule.priority}", index=index, field="priority")
        names.add(rule.name)
        priorities.add(rule.priority)
        for name in ("team", "fallback_team"):
            team = getattr(rule, name)
            if team is not None and team not in teams:
                raise _RuleRefused(f"{name} {team} has no reps", index=index, field=name)


async def _rep_views(session: AsyncSession) -> dict[str, RepView]:
    rows = await session.execute(
        select(Rep, func.coalesce(RepWorkload.open_assignments, 0))
        .outerjoin(RepWorkload, RepWorkload.rep_id == Rep.rep_id)
        .order_by(Rep.rep_id)
    )
    return {rep.rep_id: rep_view(rep, open_assignments) for rep, open_assignments in rows}


async def _first_assignments(session: AsyncSession, *, window_from: datetime, window_to: datetime) -> list[_Replayed]:
    in_window = (
        Assignment.attempt == 1,
        Assignment.created_at >= window_from,
        Assignment.created_at <= window_to,
    )
    count = await session.scalar(select(func.count()).select_from(Assignment).where(*in_window))
    if count and count > MAX_REPLAYED_LEADS:
        raise Unprocessable(
            f"{count} MQLs in the window, more than the {MAX_REPLAYED_LEADS} a simulation replays: ask for fewer days",
            errors=[{"loc": ["body", "days"], "msg": f"more than {MAX_REPLAYED_LEADS} MQLs", "type": "too_many"}],
        )
    rows = await session.execute(
        select(Assignment.lead, Assignment.created_at, Assignment.rep_id, Assignment.team, Assignment.rule)
        .where(*in_window)
        .order_by(Assignment.created_at, Assignment.seq)
        .limit(MAX_REPLAYED_LEADS)
    )
    return [
        _Replayed(lead=lead, created_at=created_at, rep_id=rep_id, team=team, rule=rule)
        for lead, created_at, rep_id, team, rule in rows
    ]


async def _account_owners(session: AsyncSession, rules: Sequence[Rule]) -> dict[str, str]:
    if not any(rule.method == "account_owner" for rule in rules):
        return {}
    return dict((await session.execute(select(Account.domain, Account.owner_rep_id))).all())


def _replay(
    replayed: Sequence[_Replayed],
    *,
    rules: Sequence[Rule],
    default: Rule,
    reps: Mapping[str, RepView],
    accounts: Mapping[str, str],
) -> ProposedDistribution:
    proposed = ProposedDistribution()
    workloads = dict(reps)
    pools: dict[str, PoolState] = {}
    shift_changes = _shift_changes(reps.values(), replayed)
    next_change = 0
    for mql in replayed:
        # Each rep's hours stand in as "always" or "never" as they were at the lead's time: the same
        # decisions, without working out every rep's week again for every lead.
        while next_change < len(shift_changes) and shift_changes[next_change][0] <= mql.created_at:
            _, rep_id, working = shift_changes[next_change]
            workloads[rep_id] = replace(workloads[rep_id], working_hours=None if working else _NEVER)
            next_change += 1
        decision = route(
            lead_attributes(mql.lead),
            rules=rules,
            default=default,
            reps=workloads,
            pools=pools,
            accounts=accounts,
            now=mql.created_at,
        )
        if decision.rule == default.name:
            proposed.unmatched += 1
        if any(c["outcome"] == "skipped" and _AT_CAPACITY in c["reason"] for c in decision.candidates):
            proposed.capacity_hits += 1
        chosen = workloads.get(decision.chosen) if decision.chosen is not None else None
        if chosen is not None:
            workloads[chosen.rep_id] = replace(chosen, open_assignments=chosen.open_assignments + 1)
        proposed.count(
            rule=decision.rule,
            rep_id=None if chosen is None else chosen.rep_id,
            team=None if chosen is None else chosen.team,
        )
    return proposed


_NEVER: WorkingHours = {}
"""Working hours with no shift: a rep who is not working at the moment."""


def _shift_changes(reps: Iterable[RepView], replayed: Sequence[_Replayed]) -> list[tuple[datetime, str, bool]]:
    """When each rep with working hours is working or not, from the first replayed lead to the last, in order."""
    if not replayed:
        return []
    first, last = replayed[0].created_at, replayed[-1].created_at
    changes: list[tuple[datetime, str, bool]] = []
    for rep in reps:
        if rep.working_hours is None:
            continue
        zone = ZoneInfo(rep.timezone)
        # A day either side, so that shifts begun before the first lead or ending after the last are whole.
        first_day = first.astimezone(zone).date() - timedelta(days=1)
        days = (last.astimezone(zone).date() - first_day).days + 3
        changes.append((first, rep.rep_id, False))
        for begin, end in shifts_between(first_day, days, rep.working_hours, zone):
            if end > first:
                changes.append((max(begin, first), rep.rep_id, True))
                changes.append((end, rep.rep_id, False))
    # Shifts come merged, so a rep never stops and starts at one instant, except at the first lead's time,
    # where the stop that opens the timeline must come before a shift already under way.
    return sorted(changes, key=lambda change: (change[0], change[2]))
