"""Routing a lead to a rep: conditions, rule order, eligibility, the four methods, fairness and SLA deadlines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from baton_handoff.business_hours import WorkingHours
from baton_handoff.routing import (
    Condition,
    Method,
    PoolState,
    RepView,
    RoutingDecision,
    Rule,
    SlaPolicy,
    default_rule,
    lead_attributes,
    match_rule,
    route,
    sla_deadlines,
    why_ineligible,
)

NOW = datetime(2030, 6, 3, 12, 0, tzinfo=UTC)  # a Monday: 14:00 in Berlin, 08:00 in New York
SLA = SlaPolicy(accept_within=timedelta(minutes=15), touch_within=timedelta(hours=4))
WALL_CLOCK_SLA = replace(SLA, clock="wall_clock")
DEFAULT = default_rule(SLA)
NINE_TO_FIVE: WorkingHours = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY_NINE_TO_FIVE: WorkingHours = {
    day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
LEAD: dict[str, Any] = {
    "email": "Jane.Doe@Acme.example",
    "country": "US",
    "company_size": 250,
    "industry": "saas",
    "source": "webinar",
    "campaign": "spring-launch",
    "title": "Senior VP of Sales",
    "score": 82,
    "fit_grade": "A",
}


def rep(rep_id: str, **changes: Any) -> RepView:
    """An available rep with room for many leads, always working, in no team, unless told otherwise."""
    fields: dict[str, Any] = {
        "rep_id": rep_id,
        "team": None,
        "territories": frozenset(),
        "segments": frozenset(),
        "weight": 1,
        "capacity": 10_000,
        "open_assignments": 0,
        "timezone": "UTC",
        "working_hours": None,
        "status": "available",
        "ooo_until": None,
    }
    return RepView(**(fields | changes))


def rule(name: str, *conditions: Condition, priority: int = 10, **changes: Any) -> Rule:
    fields: dict[str, Any] = {"team": None, "method": "round_robin", "sla": SLA}
    return Rule(name=name, priority=priority, conditions=conditions, **(fields | changes))


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin"))


@dataclass
class Router:
    """Reps, rules, accounts and rotation state, routed one lead after another as handoff would."""

    reps: list[RepView]
    rules: list[Rule] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)
    pools: dict[str, PoolState] = field(default_factory=dict)

    def route(self, lead: dict[str, Any] | None = None, **options: Any) -> RoutingDecision:
        return route(
            LEAD if lead is None else lead,
            rules=self.rules,
            default=DEFAULT,
            reps={rep.rep_id: rep for rep in self.reps},
            pools=self.pools,
            accounts=self.accounts,
            now=options.pop("now", NOW),
            **options,
        )

    def deal(self, leads: int) -> list[str | None]:
        """Who gets each of ``leads`` leads in turn."""
        return [self.route().chosen for _ in range(leads)]

    def set(self, rep_id: str, **changes: Any) -> None:
        self.reps = [replace(rep, **changes) if rep.rep_id == rep_id else rep for rep in self.reps]


def only(method: Method, *reps: RepView, **changes: Any) -> Router:
    """A router whose one rule sends every lead by ``method``."""
    return Router(list(reps), rules=[rule("all", method=method, **changes)])


def outcomes(decision: RoutingDecision) -> dict[str, tuple[str, str]]:
    return {candidate["rep_id"]: (candidate["outcome"], candidate["reason"]) for candidate in decision.candidates}


def assert_spread_within_one_after_every_lead(chosen: Sequence[str | None], shares: dict[str, float]) -> None:
    """After every lead of the run, each rep's count is within 1 of its exact share of the leads so far."""
    counts: Counter[str | None] = Counter()
    for dealt, rep_id in enumerate(chosen, start=1):
        counts[rep_id] += 1
        for candidate, share in shares.items():
            assert abs(counts[candidate] - dealt * share) <= 1, (dealt, dict(counts))


def longest_streak(chosen: Sequence[str | None]) -> int:
    return max(len(list(streak)) for _, streak in groupby(chosen))


# --- conditions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (Condition("country", "eq", "us"), True),
        (Condition("country", "eq", "CA"), False),
        (Condition("fit_grade", "eq", "a"), True),
        (Condition("score", "eq", 82), True),
        (Condition("country", "neq", "CA"), True),
        (Condition("country", "neq", "Us"), False),
        (Condition("country", "in", ["ca", "us"]), True),
        (Condition("country", "in", ["DE", "FR"]), False),
        (Condition("country", "not_in", ["DE", "FR"]), True),
        (Condition("country", "not_in", ["US"]), False),
        (Condition("score", "gte", 82), True),
        (Condition("score", "gte", 83), False),
        (Condition("score", "lte", 82), True),
        (Condition("score", "lte", 81), False),
        (Condition("company_size", "gte", 100), True),
        (Condition("company_size", "lte", 99), False),
        (Condition("title", "contains", "vp"), True),
        (Condition("title", "contains", "CEO"), False),
        (Condition("email_domain", "eq", "acme.example"), True),
        (Condition("campaign", "exists", True), True),
        (Condition("campaign", "exists", False), False),
        (Condition("campaign", "exists"), True),
    ],
)
def test_a_condition_on_an_attribute_the_lead_has(condition: Condition, holds: bool) -> None:
    rules = [rule("it", condition)]

    chosen, tried = match_rule(rules, lead_attributes(LEAD), default=DEFAULT)

    assert (chosen.name == "it") is holds
    assert tried[0]["matched"] is holds


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (Condition("industry", "eq", "saas"), False),
        (Condition("industry", "neq", "saas"), True),
        (Condition("industry", "in", ["saas"]), False),
        (Condition("industry", "not_in", ["saas"]), True),
        (Condition("company_size", "gte", 0), False),
        (Condition("company_size", "lte", 10_000), False),
        (Condition("title", "contains", "VP"), False),
        (Condition("industry", "exists", True), False),
        (Condition("industry", "exists", False), True),
    ],
)
def test_a_condition_on_an_attribute_the_lead_lacks(condition: Condition, holds: bool) -> None:
    lead = lead_attributes({"country": "US", "industry": "  ", "title": None})

    chosen, _ = match_rule([rule("it", condition)], lead, default=DEFAULT)

    assert (chosen.name == "it") is holds


def test_a_number_compared_with_text_does_not_hold() -> None:
    chosen, tried = match_rule([rule("big", Condition("score", "gte", 50))], {"score": "82"}, default=DEFAULT)

    assert chosen is DEFAULT
    assert tried[0]["why"] == "score gte 50 fails: score is 82"


def test_each_rule_tried_says_which_condition_held_or_failed() -> None:
    rules = [
        rule("retail", Condition("industry", "in", ["retail", "fintech"]), priority=1),
        rule("us-saas", Condition("country", "eq", "US"), Condition("industry", "eq", "saas"), priority=2),
    ]

    _, tried = match_rule(rules, lead_attributes(LEAD), default=DEFAULT)

    assert tried == [
        {"rule": "retail", "matched": False, "why": "industry in [retail, fintech] fails: industry is saas"},
        {"rule": "us-saas", "matched": True, "why": "country eq US holds; industry eq saas holds"},
    ]


def test_a_missing_attribute_is_named_in_the_explanation() -> None:
    _, tried = match_rule(
        [rule("de", Condition("country", "eq", "DE")), rule("not-de", Condition("country", "neq", "DE"))],
        {},
        default=DEFAULT,
    )

    assert [entry["why"] for entry in tried] == [
        "country eq DE fails: country is missing",
        "country neq DE holds: country is missing",
    ]


# --- rule order and the default -----------------------------------------------------------------------------------


def test_rules_are_tried_in_priority_order_and_the_first_that_holds_wins() -> None:
    rules = [
        rule("any-us", Condition("country", "eq", "US"), priority=20),
        rule("big-us", Condition("country", "eq", "US"), Condition("company_size", "gte", 200), priority=5),
        rule("germany", Condition("country", "eq", "DE"), priority=1),
    ]

    chosen, tried = match_rule(rules, lead_attributes(LEAD), default=DEFAULT)

    assert chosen.name == "big-us"
    assert [entry["rule"] for entry in tried] == ["germany", "big-us"]


def test_with_no_rule_holding_the_default_round_robin_over_all_reps_is_used() -> None:
    router = Router(
        [rep("rep-a", team="emea"), rep("rep-b", team="amer")], rules=[rule("de", Condition("country", "eq", "DE"))]
    )

    decision = router.route()

    assert (decision.rule, decision.method, decision.team) == ("default", "round_robin", None)
    assert decision.matched[-1] == {"rule": "default", "matched": True, "why": "no rule matched"}
    assert {candidate["rep_id"] for candidate in decision.candidates} == {"rep-a", "rep-b"}


def test_a_rule_without_conditions_takes_every_lead() -> None:
    chosen, tried = match_rule([rule("catch-all")], {}, default=DEFAULT)

    assert chosen.name == "catch-all"
    assert tried == [{"rule": "catch-all", "matched": True, "why": "no conditions"}]


def test_a_rules_team_is_its_pool() -> None:
    router = Router(
        [rep("rep-a", team="amer"), rep("rep-b", team="emea"), rep("rep-c", team="amer")],
        rules=[rule("us", Condition("country", "eq", "US"), team="amer")],
    )

    chosen = router.deal(4)

    assert chosen == ["rep-a", "rep-c", "rep-a", "rep-c"]
    assert "rep-b" not in outcomes(router.route())


# --- lead attributes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("company_size", "segment"), [(1, "smb"), (99, "smb"), (100, "mid"), (999, "mid"), (1000, "ent"), (None, None)]
)
def test_the_segment_follows_the_company_size_bands(company_size: int | None, segment: str | None) -> None:
    assert lead_attributes({"company_size": company_size})["segment"] == segment


def test_the_email_domain_is_taken_lower_case_and_the_other_attributes_are_kept() -> None:
    attributes = lead_attributes(LEAD)

    assert attributes["email_domain"] == "acme.example"
    assert attributes == LEAD | {"email_domain": "acme.example", "segment": "mid"}
    assert lead_attributes(attributes) == attributes


def test_a_lead_without_an_email_has_no_email_domain() -> None:
    assert lead_attributes({"email": None})["email_domain"] is None


# --- eligibility --------------------------------------------------------------------------------------------------


def ineligible(
    candidate: RepView, lead: dict[str, Any] | None = None, *, now: datetime = NOW, clock: str = "business_hours"
) -> str | None:
    return why_ineligible(candidate, lead_attributes(LEAD if lead is None else lead), now=now, clock=clock)


def test_an_available_rep_inside_their_hours_and_under_capacity_is_eligible() -> None:
    assert ineligible(rep("rep-a", working_hours=NINE_TO_FIVE, timezone="Europe/Berlin", capacity=5)) is None


def test_an_away_rep_is_ineligible() -> None:
    assert ineligible(rep("rep-a", status="away")) == "away"


def test_an_out_of_office_rep_without_a_return_date_is_ineligible() -> None:
    assert ineligible(rep("rep-a", status="ooo")) == "out of office"


def test_a_rep_out_of_office_until_a_later_date_is_ineligible_whatever_their_status() -> None:
    back = datetime(2030, 6, 10, tzinfo=UTC)

    assert ineligible(rep("rep-a", status="ooo", ooo_until=back)) == "out of office until 2030-06-10T00:00:00+00:00"
    assert ineligible(rep("rep-a", ooo_until=back)) == "out of office until 2030-06-10T00:00:00+00:00"


def test_a_rep_whose_out_of_office_date_has_passed_is_back() -> None:
    assert ineligible(rep("rep-a", status="ooo", ooo_until=NOW)) is None


def test_a_rep_at_capacity_is_ineligible() -> None:
    assert ineligible(rep("rep-a", capacity=5, open_assignments=4)) is None
    assert ineligible(rep("rep-a", capacity=5, open_assignments=5)) == "at capacity (5/5)"


def test_a_rep_with_territories_takes_only_leads_from_them() -> None:
    americas = rep("rep-a", territories=frozenset({"US", "CA"}))

    assert ineligible(americas, LEAD | {"country": "us"}) is None
    assert ineligible(americas, LEAD | {"country": "DE"}) == "territory DE not in [CA, US]"
    assert ineligible(americas, LEAD | {"country": None}) == "no country on the lead; territory must be in [CA, US]"
    assert ineligible(rep("rep-b"), LEAD | {"country": None}) is None


def test_a_rep_with_segments_takes_only_leads_from_them() -> None:
    small = rep("rep-a", segments=frozenset({"smb"}))

    assert ineligible(small, LEAD | {"company_size": 20}) is None
    assert ineligible(small, LEAD | {"company_size": 5000}) == "segment ent not in [smb]"
    assert ineligible(small, LEAD | {"company_size": None}) == "no company size on the lead; segment must be in [smb]"
    assert ineligible(rep("rep-b"), LEAD | {"company_size": None}) is None


def test_the_same_instant_is_inside_a_berlin_reps_hours_and_outside_a_new_york_reps() -> None:
    in_berlin = rep("rep-berlin", timezone="Europe/Berlin", working_hours=NINE_TO_FIVE)
    in_new_york = rep("rep-new-york", timezone="America/New_York", working_hours=NINE_TO_FIVE)

    assert ineligible(in_berlin, now=NOW) is None
    assert ineligible(in_new_york, now=NOW) == "outside working hours (America/New_York)"
    evening_in_berlin = datetime(2030, 6, 3, 16, 30, tzinfo=UTC)
    assert ineligible(in_berlin, now=evening_in_berlin) == "outside working hours (Europe/Berlin)"
    assert ineligible(in_new_york, now=evening_in_berlin) is None


@pytest.mark.parametrize(
    ("at", "working"),
    [
        (datetime(2030, 3, 29, 7, 30, tzinfo=UTC), False),  # Friday before the clocks go forward: 08:30 in Berlin
        (datetime(2030, 4, 1, 7, 30, tzinfo=UTC), True),  # Monday after: 09:30
        (datetime(2030, 3, 31, 7, 30, tzinfo=UTC), True),  # the Sunday itself, after 02:00 became 03:00: 09:30
        (datetime(2030, 10, 25, 15, 30, tzinfo=UTC), False),  # Friday before the clocks go back: 17:30
        (datetime(2030, 10, 28, 15, 30, tzinfo=UTC), True),  # Monday after: 16:30
        (datetime(2030, 10, 27, 7, 30, tzinfo=UTC), False),  # the Sunday itself, after 03:00 became 02:00: 08:30
    ],
)
def test_a_berlin_reps_hours_follow_the_clocks_changing(at: datetime, working: bool) -> None:
    in_berlin = rep("rep-berlin", timezone="Europe/Berlin", working_hours=EVERY_DAY_NINE_TO_FIVE)

    assert (ineligible(in_berlin, now=at) is None) is working


def test_a_wall_clock_rule_ignores_working_hours() -> None:
    off_hours = rep("rep-new-york", timezone="America/New_York", working_hours=NINE_TO_FIVE)

    assert ineligible(off_hours, clock="wall_clock") is None


def test_a_wall_clock_rule_routes_to_a_rep_outside_their_hours() -> None:
    router = only("round_robin", rep("rep-new-york", timezone="America/New_York", working_hours=NINE_TO_FIVE))

    assert router.route().chosen is None
    router.rules = [rule("all", sla=WALL_CLOCK_SLA)]
    assert router.route().chosen == "rep-new-york"


# --- round robin --------------------------------------------------------------------------------------------------


def test_round_robin_takes_reps_in_turn_and_wraps_around() -> None:
    router = only("round_robin", rep("rep-b"), rep("rep-a"), rep("rep-c"))

    assert router.deal(5) == ["rep-a", "rep-b", "rep-c", "rep-a", "rep-b"]
    assert router.pools["all"].last_rep_id == "rep-b"


def test_round_robin_continues_after_the_rep_chosen_last() -> None:
    router = only("round_robin", rep("rep-a"), rep("rep-b"), rep("rep-c"))
    router.pools["all"] = PoolState(last_rep_id="rep-b")

    assert router.deal(2) == ["rep-c", "rep-a"]


def test_round_robin_continues_after_a_rep_who_has_left_the_pool() -> None:
    router = only("round_robin", rep("rep-a"), rep("rep-c"))
    router.pools["all"] = PoolState(last_rep_id="rep-b")

    assert router.deal(1) == ["rep-c"]


def test_round_robin_keeps_the_spread_within_one_over_any_run() -> None:
    reps = [rep(f"rep-{index}") for index in range(7)]
    router = only("round_robin", *reps)

    chosen = router.deal(1000)

    assert_spread_within_one_after_every_lead(chosen, {candidate.rep_id: 1 / 7 for candidate in reps})


def test_round_robin_skips_ineligible_reps_and_says_why_for_each() -> None:
    router = only(
        "round_robin",
        rep("rep-a", status="away"),
        rep("rep-b", capacity=1, open_assignments=1),
        rep("rep-c"),
        rep("rep-d"),
    )

    decision = router.route()

    assert decision.chosen == "rep-c"
    assert outcomes(decision) == {
        "rep-a": ("skipped", "away"),
        "rep-b": ("skipped", "at capacity (1/1)"),
        "rep-c": ("chosen", "next in rotation (first)"),
        "rep-d": ("eligible", "eligible; rep-c came first in rotation"),
    }


def test_a_rep_back_from_absence_gets_its_fair_share_under_round_robin_not_a_flood() -> None:
    router = only("round_robin", rep("rep-a"), rep("rep-b"), rep("rep-c"))
    router.set("rep-b", status="away")
    assert "rep-b" not in router.deal(50)

    router.set("rep-b", status="available")
    after = Counter(router.deal(30))

    assert after == {"rep-a": 10, "rep-b": 10, "rep-c": 10}


def test_nobody_eligible_leaves_the_lead_unassigned_and_the_rotation_where_it_stood() -> None:
    router = only("round_robin", rep("rep-a", status="away"), rep("rep-b", status="ooo"))
    router.pools["all"] = PoolState(last_rep_id="rep-a")

    decision = router.route()

    assert decision.chosen is None
    assert [candidate["outcome"] for candidate in decision.candidates] == ["skipped", "skipped"]
    assert router.pools["all"].last_rep_id == "rep-a"


def test_reps_who_already_had_the_lead_are_skipped() -> None:
    router = only("round_robin", rep("rep-a"), rep("rep-b"), rep("rep-c"))

    decision = router.route(excluded_reps=frozenset({"rep-a", "rep-b"}))

    assert decision.chosen == "rep-c"
    assert outcomes(decision)["rep-a"] == ("skipped", "already had this lead")
    assert router.route(excluded_reps=frozenset({"rep-a", "rep-b", "rep-c"})).chosen is None


def test_each_rule_keeps_its_own_rotation() -> None:
    router = Router(
        [rep("rep-a"), rep("rep-b"), rep("rep-c")],
        rules=[rule("us", Condition("country", "eq", "US")), rule("de", Condition("country", "eq", "DE"))],
    )

    american = [router.route(LEAD).chosen for _ in range(2)]
    german = [router.route(LEAD | {"country": "DE"}).chosen for _ in range(2)]

    assert american == german == ["rep-a", "rep-b"]


# --- weighted -----------------------------------------------------------------------------------------------------


def test_weighted_gives_each_rep_its_share_within_one_after_every_lead_of_a_thousand() -> None:
    router = only("weighted", rep("rep-a", weight=3), rep("rep-b", weight=1), rep("rep-c", weight=1))

    chosen = router.deal(1000)

    assert Counter(chosen) == {"rep-a": 600, "rep-b": 200, "rep-c": 200}
    assert_spread_within_one_after_every_lead(chosen, {"rep-a": 3 / 5, "rep-b": 1 / 5, "rep-c": 1 / 5})


def test_weighted_interleaves_the_heavier_rep_instead_of_giving_it_bursts() -> None:
    router = only("weighted", rep("rep-a", weight=3), rep("rep-b", weight=1), rep("rep-c", weight=1))

    chosen = router.deal(1000)

    assert longest_streak(chosen) == 2
    assert chosen[:5] == ["rep-a", "rep-b", "rep-a", "rep-c", "rep-a"]


def test_weighted_with_equal_weights_alternates() -> None:
    router = only("weighted", rep("rep-a", weight=2), rep("rep-b", weight=2))

    assert router.deal(6) == ["rep-a", "rep-b"] * 3


def test_a_rep_back_from_absence_gets_its_fair_share_under_weighted_not_a_flood() -> None:
    router = only("weighted", rep("rep-a", weight=2), rep("rep-b", weight=1), rep("rep-c", weight=1))
    router.deal(7)
    router.set("rep-b", status="ooo")
    weight_when_leaving = router.pools["all"].current_weights["rep-b"]
    assert "rep-b" not in router.deal(50)
    assert router.pools["all"].current_weights["rep-b"] == weight_when_leaving

    router.set("rep-b", status="available")
    after = Counter(router.deal(40))

    assert after == {"rep-a": 20, "rep-b": 10, "rep-c": 10}


def test_weighted_forgets_reps_no_longer_in_the_pool() -> None:
    router = only("weighted", rep("rep-a"), rep("rep-b"), rep("rep-c"))
    router.deal(4)

    router.reps = [candidate for candidate in router.reps if candidate.rep_id != "rep-b"]
    router.deal(1)

    assert set(router.pools["all"].current_weights) == {"rep-a", "rep-c"}


def test_weighted_keeps_current_weights_bounded_when_eligibility_keeps_changing() -> None:
    router = only("weighted", rep("rep-a", weight=5), rep("rep-b", weight=1), rep("rep-c", weight=1))
    for lead in range(500):
        router.set("rep-a", status="away" if lead % 3 else "available")
        router.set("rep-c", status="away" if lead % 7 == 0 else "available")
        router.deal(1)

    assert all(abs(weight) <= 7 for weight in router.pools["all"].current_weights.values())


def test_weighted_skips_a_rep_of_weight_zero() -> None:
    router = only("weighted", rep("rep-a", weight=0), rep("rep-b"))

    decision = router.route()

    assert decision.chosen == "rep-b"
    assert outcomes(decision)["rep-a"] == ("skipped", "weight 0")


def test_weighted_explains_the_choice() -> None:
    router = only("weighted", rep("rep-a", weight=3), rep("rep-b", weight=1))

    decision = router.route()

    assert outcomes(decision) == {
        "rep-a": ("chosen", "weight 3, furthest ahead (3 of 4)"),
        "rep-b": ("eligible", "eligible; rep-a was further ahead"),
    }


# --- least loaded -------------------------------------------------------------------------------------------------


def test_least_loaded_picks_the_rep_with_fewest_open_assignments() -> None:
    router = only(
        "least_loaded",
        rep("rep-a", open_assignments=4),
        rep("rep-b", open_assignments=1),
        rep("rep-c", open_assignments=2),
    )

    decision = router.route()

    assert decision.chosen == "rep-b"
    assert outcomes(decision)["rep-b"] == ("chosen", "fewest open assignments (1)")


def test_least_loaded_rotates_between_equally_loaded_reps() -> None:
    router = only("least_loaded", rep("rep-a"), rep("rep-b"), rep("rep-c"))

    assert router.deal(6) == ["rep-a", "rep-b", "rep-c"] * 2


def test_least_loaded_follows_the_load_as_it_grows() -> None:
    router = only("least_loaded", rep("rep-a", open_assignments=2), rep("rep-b"), rep("rep-c"))
    chosen = []
    for _ in range(7):
        decision = router.route()
        assert decision.chosen is not None
        chosen.append(decision.chosen)
        taken = next(candidate for candidate in router.reps if candidate.rep_id == decision.chosen)
        router.set(decision.chosen, open_assignments=taken.open_assignments + 1)

    assert chosen == ["rep-b", "rep-c", "rep-b", "rep-c", "rep-a", "rep-b", "rep-c"]


def test_least_loaded_skips_ineligible_reps_however_idle() -> None:
    router = only("least_loaded", rep("rep-a", status="away"), rep("rep-b", open_assignments=3))

    assert router.route().chosen == "rep-b"


# --- account owner ------------------------------------------------------------------------------------------------


def account_router(*reps: RepView) -> Router:
    router = only("account_owner", *reps, team="amer")
    router.accounts = {"acme.example": "rep-owner"}
    return router


def test_the_account_owner_gets_the_lead_from_their_domain_whatever_their_team() -> None:
    router = account_router(rep("rep-a", team="amer"), rep("rep-owner", team="emea"))

    decision = router.route()

    assert decision.chosen == "rep-owner"
    assert outcomes(decision) == {"rep-owner": ("chosen", "account owner of acme.example")}
    assert router.route().chosen == "rep-owner"


def test_an_account_owner_who_cannot_take_it_is_passed_over_for_the_rules_team_with_the_reason() -> None:
    router = account_router(
        rep("rep-a", team="amer"), rep("rep-b", team="amer"), rep("rep-owner", team="amer", status="away")
    )

    decision = router.route()

    assert decision.chosen == "rep-a"
    assert outcomes(decision)["rep-owner"] == ("skipped", "account owner of acme.example, but away")
    assert decision.note == "account owner rep-owner cannot take it (away); round robin over team amer"
    assert router.route().chosen == "rep-b"


def test_an_account_owner_who_already_had_the_lead_is_passed_over() -> None:
    router = account_router(rep("rep-a", team="amer"), rep("rep-owner", team="amer"))

    decision = router.route(excluded_reps=frozenset({"rep-owner"}))

    assert decision.chosen == "rep-a"
    assert outcomes(decision)["rep-owner"] == ("skipped", "account owner of acme.example, but already had this lead")


def test_a_lead_from_a_domain_without_an_account_goes_to_the_rules_team() -> None:
    router = account_router(rep("rep-a", team="amer"), rep("rep-owner", team="emea"))

    decision = router.route(LEAD | {"email": "someone@elsewhere.example"})

    assert decision.chosen == "rep-a"
    assert decision.note == "no account owner for elsewhere.example; round robin over team amer"


def test_an_account_owned_by_someone_no_longer_a_rep_goes_to_the_rules_team() -> None:
    router = account_router(rep("rep-a", team="amer"))

    decision = router.route()

    assert decision.chosen == "rep-a"
    assert decision.note == "account owner rep-owner of acme.example is not a rep; round robin over team amer"


# --- the decision -------------------------------------------------------------------------------------------------


def test_the_decision_carries_the_rules_sla_attempts_and_fallback_and_serves_as_json() -> None:
    router = Router(
        [rep("rep-a", team="amer")],
        rules=[
            rule(
                "us",
                Condition("country", "eq", "US"),
                team="amer",
                sla=WALL_CLOCK_SLA,
                max_attempts=2,
                fallback_team="ops",
            )
        ],
    )

    decision = router.route()
    served = json.loads(json.dumps(decision.as_dict()))

    assert served == {
        "rule": "us",
        "method": "round_robin",
        "team": "amer",
        "matched": [{"rule": "us", "matched": True, "why": "country eq US holds"}],
        "candidates": [{"rep_id": "rep-a", "team": "amer", "outcome": "chosen", "reason": "next in rotation (first)"}],
        "chosen": "rep-a",
        "note": None,
        "sla": {"accept_within": "PT15M", "touch_within": "PT4H", "clock": "wall_clock"},
        "max_attempts": 2,
        "fallback_team": "ops",
        "decided_at": "2030-06-03T12:00:00+00:00",
    }


# --- SLA deadlines ------------------------------------------------------------------------------------------------


def test_wall_clock_deadlines_are_the_start_plus_the_durations_and_at_risk_at_eighty_percent() -> None:
    off_hours = rep("rep-a", timezone="Europe/Berlin", working_hours=NINE_TO_FIVE)
    start = datetime(2030, 6, 8, 22, 0, tzinfo=UTC)  # a Saturday night

    deadlines = sla_deadlines(start, WALL_CLOCK_SLA, off_hours)

    assert deadlines.accept_due_at == start + timedelta(minutes=15)
    assert deadlines.accept_at_risk_at == start + timedelta(minutes=12)
    assert deadlines.touch_due_at == start + timedelta(hours=4)
    assert deadlines.touch_at_risk_at == start + timedelta(hours=3, minutes=12)


def test_business_hours_deadlines_cross_the_night_and_the_weekend() -> None:
    in_berlin = rep("rep-a", timezone="Europe/Berlin", working_hours=NINE_TO_FIVE)

    deadlines = sla_deadlines(berlin("2030-06-07T16:55"), SLA, in_berlin)  # Friday, five minutes before home time

    assert deadlines.accept_at_risk_at == berlin("2030-06-10T09:07")
    assert deadlines.accept_due_at == berlin("2030-06-10T09:10")
    assert deadlines.touch_at_risk_at == berlin("2030-06-10T12:07")
    assert deadlines.touch_due_at == berlin("2030-06-10T12:55")


def test_at_risk_is_when_eighty_percent_of_the_working_time_has_passed_not_of_the_wall_clock() -> None:
    in_berlin = rep("rep-a", timezone="Europe/Berlin", working_hours=NINE_TO_FIVE)
    policy = SlaPolicy(accept_within=timedelta(hours=10), touch_within=timedelta(hours=10))

    deadlines = sla_deadlines(berlin("2030-06-03T09:00"), policy, in_berlin)

    assert deadlines.accept_at_risk_at == berlin("2030-06-03T17:00")
    assert deadlines.accept_due_at == berlin("2030-06-04T11:00")


def test_business_hours_deadlines_count_real_hours_on_the_day_the_clocks_go_forward() -> None:
    weekend_worker = rep("rep-a", timezone="Europe/Berlin", working_hours=EVERY_DAY_NINE_TO_FIVE)

    deadlines = sla_deadlines(berlin("2030-03-30T16:00"), SLA, weekend_worker)

    assert deadlines.touch_due_at == berlin("2030-03-31T12:00")
    assert deadlines.touch_due_at == datetime(2030, 3, 31, 10, 0, tzinfo=UTC)


def test_business_hours_deadlines_for_a_rep_without_working_hours_run_on_the_wall_clock() -> None:
    always = rep("rep-a", timezone="Europe/Berlin")
    start = datetime(2030, 6, 8, 22, 0, tzinfo=UTC)

    assert sla_deadlines(start, SLA, always).accept_due_at == start + timedelta(minutes=15)
