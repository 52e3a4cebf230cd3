"""Routing a lead to a rep as pure functions: rules, eligibility, the four methods, and SLA deadlines.

A lead is routed on its attributes (``lead_attributes``): what scoring passed on (``country``, ``company_size``,
``industry``, ``source``, ``campaign``, ``title``, ``email``, ``score``, ``fit_grade``) plus two derived ones:

* ``email_domain`` — the part of the e-mail address after the ``@``, lower-case;
* ``segment`` — from ``company_size``: ``smb`` below 100 employees, ``mid`` from 100 to 999, ``ent`` from 1000.

Conditions compare strings case-insensitively. A condition on an attribute the lead does not have fails, except
``neq`` and ``not_in``, which hold (a lead without a country is not in the US), and ``exists false``.

A rep is eligible when available, not out of office, inside their working hours in their own timezone (unless
the rule's clock is ``wall_clock``), under capacity, and — when they have territories or segments — the lead's
country and segment are among them. A rep whose status is ``ooo`` with an ``ooo_until`` that has passed is back.

Rotations continue from where they stood: a rep who could not take leads for a while rejoins where it stands
and is not given the leads it missed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from numbers import Real
from typing import Any, Literal, TypeGuard

from pydantic import TypeAdapter

from baton_handoff.business_hours import WorkingHours, add_working_time, is_working

Method = Literal["round_robin", "weighted", "least_loaded", "account_owner"]
Op = Literal["eq", "neq", "in", "not_in", "gte", "lte", "contains", "exists"]
Clock = Literal["business_hours", "wall_clock"]
FIELDS = ("country", "company_size", "industry", "source", "campaign", "title", "email_domain", "score", "fit_grade")
METHODS: tuple[Method, ...] = ("round_robin", "weighted", "least_loaded", "account_owner")
OPS: tuple[Op, ...] = ("eq", "neq", "in", "not_in", "gte", "lte", "contains", "exists")
SEGMENT_BANDS = (("smb", 100), ("mid", 1000))
"""A company below each size is in the segment; a company of 1000 or more is ``ent``."""
AT_RISK_SHARE = (4, 5)
"""An SLA is at risk once this share (80%) of its time has passed."""
DEFAULT_RULE = "default"
ALREADY_HAD_IT = "already had this lead"

_DURATION = TypeAdapter(timedelta)


@dataclass(frozen=True)
class Condition:
    """One test of a lead attribute, e.g. ``country in [US, CA]``."""

    field: str
    op: Op
    value: Any = None


@dataclass(frozen=True)
class SlaPolicy:
    """How long a rep has to accept and to first touch a lead, counted in their working hours or the wall clock."""

    accept_within: timedelta
    touch_within: timedelta
    clock: Clock = "business_hours"

    def as_dict(self) -> dict[str, str]:
        """The policy as PRODUCT.md writes it: ISO-8601 durations and the clock."""
        return {
            "accept_within": _DURATION.dump_python(self.accept_within, mode="json"),
            "touch_within": _DURATION.dump_python(self.touch_within, mode="json"),
            "clock": self.clock,
        }


@dataclass(frozen=True)
class Rule:
    """A routing rule: when all its conditions hold, the rule's team gets the lead by the rule's method."""

    name: str
    priority: int
    conditions: tuple[Condition, ...]
    team: str | None
    method: Method
    sla: SlaPolicy
    max_attempts: int = 3
    fallback_team: str | None = None


@dataclass(frozen=True)
class RepView:
    """A rep as routing sees them."""

    rep_id: str
    team: str | None
    territories: frozenset[str]
    segments: frozenset[str]
    weight: int
    capacity: int
    open_assignments: int
    timezone: str
    working_hours: WorkingHours | None
    status: str
    ooo_until: datetime | None


@dataclass
class PoolState:
    """Where a pool's rotation stands: the rep chosen last, and each rep's smooth weighted round-robin weight."""

    last_rep_id: str | None = None
    current_weights: dict[str, int] = field(default_factory=dict)


@dataclass
class RoutingDecision:
    """Why a lead went where it went: every rule tried, every candidate with its outcome, and who was chosen."""

    rule: str
    method: str
    team: str | None
    matched: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    chosen: str | None
    sla: SlaPolicy
    max_attempts: int
    fallback_team: str | None
    decided_at: datetime
    note: str | None = None
    """What else shaped the decision, e.g. why the account owner was passed over."""

    def as_dict(self) -> dict[str, Any]:
        """The decision as stored and served by ``GET /v1/assignments/{id}/decision``."""
        return {
            "rule": self.rule,
            "method": self.method,
            "team": self.team,
            "matched": self.matched,
            "candidates": self.candidates,
            "chosen": self.chosen,
            "note": self.note,
            "sla": self.sla.as_dict(),
            "max_attempts": self.max_attempts,
            "fallback_team": self.fallback_team,
            "decided_at": self.decided_at.isoformat(),
        }


@dataclass(frozen=True)
class Deadlines:
    """When an assignment must be accepted and first touched, and when each becomes at risk (80% of the time)."""

    accept_due_at: datetime
    touch_due_at: datetime
    accept_at_risk_at: datetime
    touch_at_risk_at: datetime


def default_rule(sla: SlaPolicy) -> Rule:
    """The rule used when no rule matches: round robin over all reps."""
    return Rule(name=DEFAULT_RULE, priority=2**31 - 1, conditions=(), team=None, method="round_robin", sla=sla)


# --- lead attributes and rules ------------------------------------------------------------------------------------


def lead_attributes(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The lead's routing attributes with ``email_domain`` and ``segment`` added (see the module docstring)."""
    attributes = dict(lead)
    email = attributes.get("email")
    if isinstance(email, str) and "@" in email:
        attributes["email_domain"] = email.rpartition("@")[2].strip().lower() or None
    attributes.setdefault("email_domain", None)
    size = attributes.get("company_size")
    if _is_number(size):
        attributes["segment"] = segment_of(size)
    attributes.setdefault("segment", None)
    return attributes


def segment_of(company_size: float) -> str:
    """The segment of a company with ``company_size`` employees."""
    for segment, below in SEGMENT_BANDS:
        if company_size < below:
            return segment
    return "ent"


def match_rule(rules: Sequence[Rule], lead: Mapping[str, Any], *, default: Rule) -> tuple[Rule, list[dict[str, Any]]]:
    """The first rule in priority order whose conditions all hold (else ``default``), and why each rule tried did."""
    tried: list[dict[str, Any]] = []
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.name)):
        outcomes = [explain_condition(condition, lead) for condition in rule.conditions]
        failures = [why for holds, why in outcomes if not holds]
        if failures:
            tried.append({"rule": rule.name, "matched": False, "why": "; ".join(failures)})
            continue
        tried.append(
            {"rule": rule.name, "matched": True, "why": "; ".join(why for _, why in outcomes) or "no conditions"}
        )
        return rule, tried
    tried.append({"rule": default.name, "matched": True, "why": "no rule matched"})
    return default, tried


def explain_condition(condition: Condition, lead: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether ``condition`` holds for the lead, and a sentence saying so."""
    actual = lead.get(condition.field)
    holds = _OPS[condition.op](_absent_as_none(actual), condition.value)
    stated = f"{condition.field} {condition.op} {_show(condition.value)}"
    if holds and _absent_as_none(actual) is None:
        return True, f"{stated} holds: {condition.field} is missing"
    if holds:
        return True, f"{stated} holds"
    if _absent_as_none(actual) is None:
        return False, f"{stated} fails: {condition.field} is missing"
    return False, f"{stated} fails: {condition.field} is {_show(actual)}"


def _eq(actual: Any, expected: Any) -> bool:
    return actual is not None and _comparable(actual) == _comparable(expected)


def _in(actual: Any, expected: Any) -> bool:
    return actual is not None and _comparable(actual) in {_comparable(value) for value in _as_list(expected)}


def _gte(actual: Any, expected: Any) -> bool:
    return _is_number(actual) and _is_number(expected) and actual >= expected


def _lte(actual: Any, expected: Any) -> bool:
    return _is_number(actual) and _is_number(expected) and actual <= expected


def _contains(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and expected.casefold() in actual.casefold()


def _exists(actual: Any, expected: Any) -> bool:
    return (actual is not None) is (expected is not False)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "neq": lambda actual, expected: not _eq(actual, expected),
    "in": _in,
    "not_in": lambda actual, expected: not _in(actual, expected),
    "gte": _gte,
    "lte": _lte,
    "contains": _contains,
    "exists": _exists,
}


def _comparable(value: Any) -> Any:
    return value.strip().casefold() if isinstance(value, str) else value


def _absent_as_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, Real) and not isinstance(value, bool)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple | set | frozenset) else [value]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return str(value)


# --- eligibility --------------------------------------------------------------------------------------------------


def why_ineligible(rep: RepView, lead: Mapping[str, Any], *, now: datetime, clock: str) -> str | None:
    """Why the rep cannot take the lead now, or None when they can."""
    for reason in (
        _absence(rep, now=now),
        None if clock == "wall_clock" else _off_hours(rep, now=now),
        _over_capacity(rep),
        _outside_territory(rep, lead),
        _outside_segment(rep, lead),
    ):
        if reason is not None:
            return reason
    return None


def _absence(rep: RepView, *, now: datetime) -> str | None:
    if rep.ooo_until is not None and rep.ooo_until > now:
        return f"out of office until {rep.ooo_until.isoformat()}"
    if rep.status == "ooo" and rep.ooo_until is None:
        return "out of office"
    if rep.status not in ("available", "ooo"):
        return rep.status
    return None


def _off_hours(rep: RepView, *, now: datetime) -> str | None:
    if is_working(now, working_hours=rep.working_hours, timezone=rep.timezone):
        return None
    return f"outside working hours ({rep.timezone})"


def _over_capacity(rep: RepView) -> str | None:
    if rep.open_assignments < rep.capacity:
        return None
    return f"at capacity ({rep.open_assignments}/{rep.capacity})"


def _outside_territory(rep: RepView, lead: Mapping[str, Any]) -> str | None:
    return _outside("territory", "country", lead.get("country"), rep.territories, normalise=str.upper)


def _outside_segment(rep: RepView, lead: Mapping[str, Any]) -> str | None:
    return _outside("segment", "company size", lead.get("segment"), rep.segments, normalise=str.lower)


def _outside(
    what: str, attribute: str, value: Any, allowed: frozenset[str], *, normalise: Callable[[str], str]
) -> str | None:
    if not allowed:
        return None
    listed = "[" + ", ".join(sorted(allowed)) + "]"
    if not isinstance(value, str) or not value.strip():
        return f"no {attribute} on the lead; {what} must be in {listed}"
    if normalise(value.strip()) in {normalise(item) for item in allowed}:
        return None
    return f"{what} {value} not in {listed}"


# --- routing ------------------------------------------------------------------------------------------------------


def route(
    lead: Mapping[str, Any],
    *,
    rules: Sequence[Rule],
    default: Rule,
    reps: Mapping[str, RepView],
    pools: MutableMapping[str, PoolState],
    accounts: Mapping[str, str],
    now: datetime,
    excluded_reps: AbstractSet[str] = frozenset(),
) -> RoutingDecision:
    """Picks the rep for a lead by the first matching rule and moves that rule's rotation on."""
    attributes = lead_attributes(lead)
    rule, matched = match_rule(rules, attributes, default=default)
    decision = RoutingDecision(
        rule=rule.name,
        method=rule.method,
        team=rule.team,
        matched=matched,
        candidates=[],
        chosen=None,
        sla=rule.sla,
        max_attempts=rule.max_attempts,
        fallback_team=rule.fallback_team,
        decided_at=now,
    )
    pool = [rep for rep_id, rep in sorted(reps.items()) if rule.team is None or rep.team == rule.team]
    state = pools.setdefault(rule.name, PoolState())
    context = _Context(attributes=attributes, now=now, clock=rule.sla.clock, excluded=excluded_reps)
    if rule.method == "account_owner":
        _route_to_account_owner(decision, pool, state, context, reps=reps, accounts=accounts)
    else:
        _METHODS[rule.method](decision, pool, state, context)
    return decision


@dataclass(frozen=True)
class _Context:
    attributes: Mapping[str, Any]
    now: datetime
    clock: str
    excluded: AbstractSet[str]

    def why_not(self, rep: RepView) -> str | None:
        if rep.rep_id in self.excluded:
            return ALREADY_HAD_IT
        return why_ineligible(rep, self.attributes, now=self.now, clock=self.clock)


def _in_rotation_order(pool: Sequence[RepView], last_rep_id: str | None) -> list[RepView]:
    """The pool in rep-id order, starting after the rep chosen last and wrapping around."""
    if last_rep_id is None:
        return list(pool)
    start = next((index for index, rep in enumerate(pool) if rep.rep_id > last_rep_id), 0)
    return list(pool[start:]) + list(pool[:start])


def _sort_out(decision: RoutingDecision, reps: Sequence[RepView], context: _Context) -> list[RepView]:
    """Records every ineligible rep as skipped with its reason; returns the eligible ones, in order."""
    eligible = []
    for rep in reps:
        reason = context.why_not(rep)
        if reason is None:
            eligible.append(rep)
        else:
            decision.candidates.append(_candidate(rep, "skipped", reason))
    return eligible


def _choose(decision: RoutingDecision, chosen: RepView, why: str, others: Sequence[RepView], why_not: str) -> None:
    decision.chosen = chosen.rep_id
    decision.candidates.append(_candidate(chosen, "chosen", why))
    decision.candidates.extend(_candidate(rep, "eligible", why_not) for rep in others if rep is not chosen)


def _candidate(rep: RepView, outcome: str, reason: str) -> dict[str, Any]:
    return {"rep_id": rep.rep_id, "team": rep.team, "outcome": outcome, "reason": reason}


def _route_round_robin(decision: RoutingDecision, pool: Sequence[RepView], state: PoolState, context: _Context) -> None:
    eligible = _sort_out(decision, _in_rotation_order(pool, state.last_rep_id), context)
    if not eligible:
        return
    chosen = eligible[0]
    after = f"after {state.last_rep_id}" if state.last_rep_id else "first"
    _choose(
        decision, chosen, f"next in rotation ({after})", eligible, f"eligible; {chosen.rep_id} came first in rotation"
    )
    state.last_rep_id = chosen.rep_id


def _route_least_loaded(
    decision: RoutingDecision, pool: Sequence[RepView], state: PoolState, context: _Context
) -> None:
    eligible = _sort_out(decision, _in_rotation_order(pool, state.last_rep_id), context)
    if not eligible:
        return
    # min() keeps the first of equals, so ties go to the next rep in rotation and rotate.
    chosen = min(eligible, key=lambda rep: rep.open_assignments)
    _choose(
        decision,
        chosen,
        f"fewest open assignments ({chosen.open_assignments})",
        eligible,
        "eligible; more open assignments or later in rotation",
    )
    state.last_rep_id = chosen.rep_id


def _route_weighted(decision: RoutingDecision, pool: Sequence[RepView], state: PoolState, context: _Context) -> None:
    """Smooth weighted round robin (as nginx balances upstreams): interleaved, in proportion to weight."""
    in_pool = {rep.rep_id for rep in pool}
    state.current_weights = {rep_id: weight for rep_id, weight in state.current_weights.items() if rep_id in in_pool}
    eligible = []
    for rep in _sort_out(decision, pool, context):
        if rep.weight > 0:
            eligible.append(rep)
        else:
            decision.candidates.append(_candidate(rep, "skipped", f"weight {rep.weight}"))
    if not eligible:
        return
    # Only eligible reps gain weight, so time away earns no backlog of leads to catch up on.
    total = sum(rep.weight for rep in eligible)
    for rep in eligible:
        state.current_weights[rep.rep_id] = state.current_weights.get(rep.rep_id, 0) + rep.weight
    chosen = max(eligible, key=lambda rep: state.current_weights[rep.rep_id])
    standing = state.current_weights[chosen.rep_id]
    state.current_weights[chosen.rep_id] -= total
    # Bounded by the pool's total weight, so no history, however long, is worth more than a round of leads.
    bound = sum(max(rep.weight, 0) for rep in pool)
    state.current_weights = {
        rep_id: max(-bound, min(bound, weight)) for rep_id, weight in state.current_weights.items()
    }
    _choose(
        decision,
        chosen,
        f"weight {chosen.weight}, furthest ahead ({standing} of {total})",
        eligible,
        f"eligible; {chosen.rep_id} was further ahead",
    )
    state.last_rep_id = chosen.rep_id


def _route_to_account_owner(
    decision: RoutingDecision,
    pool: Sequence[RepView],
    state: PoolState,
    context: _Context,
    *,
    reps: Mapping[str, RepView],
    accounts: Mapping[str, str],
) -> None:
    domain = context.attributes.get("email_domain")
    owner_id = accounts.get(domain) if isinstance(domain, str) else None
    owner = reps.get(owner_id) if owner_id is not None else None
    fallback = f"round robin over {f'team {decision.team}' if decision.team else 'all reps'}"
    if owner_id is None:
        decision.note = f"no account owner for {domain}; {fallback}" if domain else f"no e-mail domain; {fallback}"
    elif owner is None:
        decision.note = f"account owner {owner_id} of {domain} is not a rep; {fallback}"
    elif (reason := context.why_not(owner)) is not None:
        decision.candidates.append(_candidate(owner, "skipped", f"account owner of {domain}, but {reason}"))
        decision.note = f"account owner {owner_id} cannot take it ({reason}); {fallback}"
    else:
        decision.chosen = owner.rep_id
        decision.candidates.append(_candidate(owner, "chosen", f"account owner of {domain}"))
        return
    others = [rep for rep in pool if rep.rep_id != owner_id]
    _route_round_robin(decision, others, state, context)


_METHODS: dict[str, Callable[[RoutingDecision, Sequence[RepView], PoolState, _Context], None]] = {
    "round_robin": _route_round_robin,
    "least_loaded": _route_least_loaded,
    "weighted": _route_weighted,
}


# --- SLA deadlines ------------------------------------------------------------------------------------------------


def sla_deadlines(start: datetime, policy: SlaPolicy, rep: RepView) -> Deadlines:
    """When the rep must accept and first touch a lead assigned at ``start``, and when each is at risk."""

    def after(duration: timedelta) -> datetime:
        if policy.clock == "wall_clock":
            return add_working_time(start, duration, working_hours=None, timezone=rep.timezone)
        return add_working_time(start, duration, working_hours=rep.working_hours, timezone=rep.timezone)

    share, of = AT_RISK_SHARE
    return Deadlines(
        accept_due_at=after(policy.accept_within),
        touch_due_at=after(policy.touch_within),
        accept_at_risk_at=after(policy.accept_within * share / of),
        touch_at_risk_at=after(policy.touch_within * share / of),
    )
