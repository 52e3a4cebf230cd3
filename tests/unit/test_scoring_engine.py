"""Scoring a lead under a model: fit, grades, caps, decay at fixed times, hand-raisers, disqualifiers, accounts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton_scoring.engine import (
    AccountEngagement,
    EngagementEvent,
    ScoreResult,
    account_domain,
    account_value,
    engagement_of,
    qualifies,
    score,
)
from baton_scoring.model import DEFAULT_MODEL_V2, ScoringModel, parse_model
from tests.unit import scoring_first_model as first_model

AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def activity(kind: str, *, days_ago: float = 0) -> EngagementEvent:
    return EngagementEvent(type=kind, occurred_at=AT - timedelta(days=days_ago))


def model_with(**overrides: Any) -> ScoringModel:
    return parse_model(
        {
            "fit_rules": [],
            "grade_thresholds": {"A": 40, "B": 25, "C": 10},
            "engagement": {"webinar_attended": {"points": 10}},
            "half_life_days": 30,
            "hand_raisers": ["demo_request"],
            "free_mail_domains": ["gmail.com"],
            "mql_threshold": 40,
            "min_grade": "C",
            **overrides,
        }
    )


def scored(
    model: ScoringModel,
    lead: Mapping[str, object] | None = None,
    activities: list[EngagementEvent] | None = None,
    *,
    account: float | None = None,
    at: datetime = AT,
) -> ScoreResult:
    return score(model, lead or {}, activities or [], account_engagement=account, at=at)


def lines(result: ScoreResult) -> dict[str, float]:
    return {line.rule: line.points for line in result.breakdown}


# --- the same points as the first model --------------------------------------------------------------------

TITLES: list[str | None] = [
    None,
    "CEO",
    "Vice President, Sales",
    "VP Sales Manager",
    "President",
    "Director of IT",
    "Head of Growth",
]
TITLES += ["Team Lead", "Marketing Manager", "Engineer", "Leadership Coach", "Chief Technology Officer", "founder"]
SIZES: list[int | None] = [None, 10, 49, 50, 199, 200, 999, 1000, 25_000]
DOMAINS: list[str | None] = ["acme.com", "gmail.com", "outlook.com", None]
ENGAGEMENT: list[list[tuple[str, float]]] = [
    [],
    [("email_click", 0)],
    [("content_download", 30)],
    [("webinar_attended", 30), ("webinar_attended", 30)],
    [("pricing_page_view", 3.5), ("email_click", 12), ("content_download", 61)],
    [("webinar_attended", 0)] * 7,
    [("demo_request", 2), ("page_view", 0)],
]


def test_the_default_model_gives_the_first_models_score_to_every_lead_of_a_spread() -> None:
    compared = 0
    for title, size, domain, engaged in itertools.product(TITLES, SIZES, DOMAINS, ENGAGEMENT):
        activities = [activity(kind, days_ago=age) for kind, age in engaged]
        facts = first_model.LeadFacts(title=title, company_size=size, industry=None, country=None, email_domain=domain)
        before = first_model.score_lead(
            first_model.DEFAULT_MODEL,
            facts,
            [first_model.EngagementEvent(a.type, a.occurred_at) for a in activities],
            now=AT,
        )
        lead = {"title": title, "company_size": size, "email": None if domain is None else f"kim@{domain}"}
        after = scored(DEFAULT_MODEL_V2, lead, activities)

        assert (after.score, after.grade, after.engagement) == (before.score, before.fit_grade, before.engagement)
        assert (after.disqualified, after.hand_raised) == (before.disqualified, before.hand_raised)
        assert qualifies(DEFAULT_MODEL_V2, after) == first_model.qualification_reason(first_model.DEFAULT_MODEL, before)
        fit_lines = {line.rule: int(line.points) for line in after.breakdown if line.kind == "fit"}
        assert fit_lines == {line.rule: line.points for line in before.breakdown if line.rule != "engagement"}
        compared += 1
    assert compared == len(TITLES) * len(SIZES) * len(DOMAINS) * len(ENGAGEMENT)


# --- fit rules and grades ----------------------------------------------------------------------------------


def points_rule(name: str, points: int, **match: Any) -> dict[str, Any]:
    return {"name": name, "points": points, **match}


def test_every_rule_that_fires_is_in_the_breakdown_with_its_points() -> None:
    model = model_with(
        fit_rules=[
            points_rule("us", 5, op="eq", attribute="country", value="US"),
            points_rule("software", 7, op="in", attribute="industry", values=["software", "saas"]),
            points_rule("retail", 9, op="eq", attribute="industry", value="retail"),
            points_rule("free mail", -10, op="email_domain_in", domains=["gmail.com"]),
        ]
    )

    result = scored(model, {"country": "us", "industry": "SaaS", "email": "kim@gmail.com"})

    assert [(line.rule, line.kind, line.points) for line in result.breakdown] == [
        ("us", "fit", 5),
        ("software", "fit", 7),
        ("free mail", "fit", -10),
    ]
    assert result.fit_points == result.score == 2


def test_only_the_first_matching_rule_of_a_group_counts_but_ungrouped_rules_all_count() -> None:
    model = model_with(
        fit_rules=[
            points_rule("vp", 25, group="title", op="contains_word", attribute="title", words=["vp"]),
            points_rule("manager", 10, group="title", op="contains_word", attribute="title", words=["manager"]),
            points_rule("sales", 3, op="contains_word", attribute="title", words=["sales"]),
            points_rule("any manager", 1, op="contains_word", attribute="title", words=["manager"]),
        ]
    )

    result = scored(model, {"title": "VP Sales Manager"})

    assert lines(result) == {"vp": 25, "sales": 3, "any manager": 1}


def model_giving(points: int) -> ScoringModel:
    return model_with(fit_rules=[points_rule("fit", points, op="eq", attribute="country", value="US")])


@pytest.mark.parametrize(
    ("fit_points", "grade"),
    [(40, "A"), (39, "B"), (25, "B"), (24, "C"), (10, "C"), (9, "D"), (-10, "D"), (1000, "A")],
)
def test_a_grade_starts_exactly_at_its_threshold(fit_points: int, grade: str) -> None:
    assert scored(model_giving(fit_points), {"country": "US"}).grade == grade


def test_engagement_does_not_count_towards_the_grade() -> None:
    result = scored(model_giving(9), {"country": "US"}, [activity("webinar_attended")] * 5)

    assert result.score == 9 + 50
    assert result.grade == "D"


@pytest.mark.parametrize(("fit_points", "reason"), [(30, "threshold"), (29, None)])
def test_the_mql_threshold_is_reached_exactly_at_it(fit_points: int, reason: str | None) -> None:
    model = model_giving(fit_points)

    result = scored(model, {"country": "US"}, [activity("webinar_attended")])

    assert result.score == fit_points + 10
    assert qualifies(model, result) == reason


@pytest.mark.parametrize(("min_grade", "reason"), [("C", "threshold"), ("B", None)])
def test_a_high_score_qualifies_only_at_the_minimum_grade_or_better(min_grade: str, reason: str | None) -> None:
    model = model_with(
        fit_rules=[points_rule("fit", 10, op="eq", attribute="country", value="US")], min_grade=min_grade
    )

    result = scored(model, {"country": "US"}, [activity("webinar_attended")] * 4)

    assert (result.score, result.grade) == (50, "C")
    assert qualifies(model, result) == reason


def test_the_email_domain_comes_from_the_email_when_not_given() -> None:
    model = model_with(fit_rules=[points_rule("rival", 0, op="email_domain_in", domains=["rival.io"])])

    assert lines(scored(model, {"email": "Kim@EU.Rival.io"})) == {"rival": 0}
    assert lines(scored(model, {"email": "kim@acme.com"})) == {}
    assert lines(scored(model, {})) == {}


# --- engagement: caps, decay at fixed times, rounding ------------------------------------------------------


def test_an_activity_is_worth_its_points_on_the_day_and_half_after_one_half_life() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 16}}, half_life_days=30)

    assert engagement_of(model, [activity("webinar_attended")], AT) == 16
    assert engagement_of(model, [activity("webinar_attended", days_ago=30)], AT) == 8
    assert engagement_of(model, [activity("webinar_attended", days_ago=60)], AT) == 4
    assert engagement_of(model, [activity("webinar_attended", days_ago=90)], AT) == 2


def test_decay_is_measured_to_the_given_time_not_the_clock() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 16}}, half_life_days=7)
    clicked = [EngagementEvent("webinar_attended", datetime(2020, 1, 1, tzinfo=UTC))]

    assert engagement_of(model, clicked, datetime(2020, 1, 8, tzinfo=UTC)) == 8
    assert engagement_of(model, clicked, datetime(2020, 1, 15, tzinfo=UTC)) == 4


def test_an_activity_after_the_scoring_time_counts_in_full() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 10}})

    assert engagement_of(model, [activity("webinar_attended", days_ago=-3)], AT) == 10


def test_times_in_other_zones_are_compared_as_instants() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 10}}, half_life_days=1)
    seen_in_new_york = AT.astimezone(ZoneInfo("America/New_York"))

    assert engagement_of(model, [EngagementEvent("webinar_attended", seen_in_new_york - timedelta(days=1))], AT) == 5


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        scored(model_with(), at=datetime(2024, 6, 1, 12, 0))


def test_each_activity_type_is_capped_after_decay() -> None:
    model = model_with(
        engagement={"webinar_attended": {"points": 10, "cap": 25}, "email_click": {"points": 3, "cap": 100}}
    )

    result = scored(model, {}, [activity("webinar_attended")] * 4 + [activity("email_click")] * 2)

    assert result.engagement == 25 + 6
    webinar = next(line for line in result.breakdown if line.rule == "engagement: webinar_attended")
    assert (webinar.points, webinar.value) == (25, 40)
    assert lines(result)["engagement: email_click"] == 6


def test_a_type_below_its_cap_after_decay_is_not_cut() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 10, "cap": 25}})

    result = scored(model, {}, [activity("webinar_attended", days_ago=30)] * 4)

    assert result.engagement == 20


def test_the_total_cap_cuts_all_types_together_and_says_so() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 10}, "email_click": {"points": 5}}, engagement_cap=30)

    result = scored(model, {}, [activity("webinar_attended")] * 3 + [activity("email_click")] * 2)

    assert result.engagement == 30
    assert lines(result) == {"engagement: webinar_attended": 30, "engagement: email_click": 10, "engagement cap": -10}


def test_activities_of_types_without_points_add_nothing() -> None:
    result = scored(model_with(), {}, [activity("page_view"), activity("unsubscribe")])

    assert result.engagement == 0
    assert result.breakdown == ()


@pytest.mark.parametrize(("points", "rounded"), [(5, 2), (7, 4), (3, 2), (9, 4)])
def test_engagement_is_rounded_once_to_the_nearest_point_ties_to_even(points: int, rounded: int) -> None:
    model = model_with(engagement={"webinar_attended": {"points": points}}, half_life_days=1)

    result = scored(model, {}, [activity("webinar_attended", days_ago=1)])

    assert result.engagement_exact == points / 2
    assert result.engagement == rounded


def test_fractions_of_several_types_are_summed_before_rounding() -> None:
    model = model_with(engagement={"a": {"points": 3}, "b": {"points": 3}}, half_life_days=1)

    result = scored(model, {}, [activity("a", days_ago=1), activity("b", days_ago=1)])

    assert result.engagement == 3  # 1.5 + 1.5, not round(1.5) + round(1.5) = 4


def test_the_breakdown_adds_up_to_the_exact_score() -> None:
    result = scored(
        DEFAULT_MODEL_V2,
        {"title": "CTO", "company_size": 300, "email": "kim@gmail.com"},
        [activity("email_click", days_ago=3), activity("pricing_page_view", days_ago=40)] * 3,
    )

    assert sum(line.points for line in result.breakdown) == pytest.approx(result.fit_points + result.engagement_exact)
    assert result.score == result.fit_points + round(result.engagement_exact)


# --- hand-raisers and disqualifiers ------------------------------------------------------------------------


def test_a_hand_raiser_qualifies_at_once_whatever_the_score_and_grade() -> None:
    result = scored(model_with(), {"title": "Intern"}, [activity("demo_request", days_ago=400)])

    assert (result.score, result.grade, result.hand_raised) == (0, "D", True)
    assert lines(result) == {"hand-raiser: demo_request": 0}
    assert qualifies(model_with(), result) == "hand-raiser"


def disqualifying_model() -> ScoringModel:
    return model_with(
        fit_rules=[
            points_rule("executive", 45, op="contains_word", attribute="title", words=["ceo"]),
            points_rule("competitor", 0, op="email_domain_in", domains=["rival.io"], disqualifies=True),
            points_rule("student", -20, op="regex", attribute="title", pattern=r"\bstudent\b", disqualifies=True),
        ]
    )


def test_disqualification_beats_a_hand_raiser() -> None:
    model = disqualifying_model()

    competitor = scored(model, {"title": "CEO", "email": "kim@rival.io"}, [activity("demo_request")])
    customer = scored(model, {"title": "CEO", "email": "kim@acme.com"}, [activity("demo_request")])

    assert competitor.disqualified and competitor.hand_raised
    assert qualifies(model, competitor) is None
    assert qualifies(model, customer) == "hand-raiser"


def test_a_disqualified_lead_keeps_its_score_but_never_qualifies_by_it() -> None:
    model = disqualifying_model()

    result = scored(model, {"title": "CEO and PhD student"}, [activity("webinar_attended")] * 3)

    assert (result.score, result.grade, result.disqualified) == (45 - 20 + 30, "B", True)
    assert lines(result)["student"] == -20
    assert qualifies(model, result) is None


# --- account engagement ------------------------------------------------------------------------------------


def committee_model() -> ScoringModel:
    return model_with(
        fit_rules=[
            points_rule("manager", 15, op="contains_word", attribute="title", words=["manager"]),
            points_rule("buying committee", 20, op="gte", attribute="account_engagement", value=40),
        ],
        engagement={"webinar_attended": {"points": 10}},
    )


def account_engagement(model: ScoringModel, people: list[list[EngagementEvent]], at: datetime) -> float:
    """The account of ``people``, each scored at ``at``."""
    summed = AccountEngagement(model.half_life_days)
    for activities in people:
        summed.add(engagement_of(model, activities, at), at)
    return account_value(summed.value_at(at))


def test_a_buying_committee_of_lukewarm_people_qualifies_the_account() -> None:
    model = committee_model()
    lukewarm = [activity("webinar_attended", days_ago=30)]  # 5 points each, a month on
    committee = [lukewarm] * 8

    alone = scored(model, {"title": "Manager"}, lukewarm, account=account_engagement(model, [lukewarm], AT))
    together = scored(model, {"title": "Manager"}, lukewarm, account=account_engagement(model, committee, AT))

    assert (alone.fit_points, alone.score) == (15, 20)
    assert qualifies(model, alone) is None
    assert lines(together)["buying committee"] == 20
    assert (together.fit_points, together.grade, together.score) == (35, "B", 40)
    assert qualifies(model, together) == "threshold"


@pytest.mark.parametrize(("account", "fit_points"), [(39.99, 15), (40, 35)])
def test_the_account_rule_fires_exactly_at_its_value(account: float, fit_points: int) -> None:
    assert scored(committee_model(), {"title": "Manager"}, account=account).fit_points == fit_points


def test_the_account_is_shown_in_the_breakdown_without_adding_points() -> None:
    result = scored(committee_model(), {"title": "Engineer"}, [], account=12.5)

    assert [(line.rule, line.kind, line.points, line.value) for line in result.breakdown] == [
        ("account engagement", "account", 0, 12.5)
    ]
    assert result.score == 0


def test_a_lead_without_an_account_matches_no_account_rule() -> None:
    model = model_with(fit_rules=[points_rule("cold account", 5, op="lte", attribute="account_engagement", value=10)])

    assert scored(model, {}, account=None).fit_points == 0
    assert scored(model, {}, account=0).fit_points == 5


def test_the_account_is_the_email_domain_unless_it_is_free_mail() -> None:
    model = model_with(free_mail_domains=["gmail.com"])

    assert account_domain(model, {"email": "kim@Acme.com"}) == "acme.com"
    assert account_domain(model, {"email": "kim@gmail.com"}) is None
    assert account_domain(model, {"email": "kim@mail.gmail.com"}) is None
    assert account_domain(model, {"email": "not an address"}) is None
    assert account_domain(model, {}) is None


def test_each_person_is_capped_before_the_account_sums_them() -> None:
    model = model_with(engagement={"webinar_attended": {"points": 10}}, engagement_cap=20)

    assert account_engagement(model, [[activity("webinar_attended")] * 5, [activity("webinar_attended")]], AT) == 30


def test_a_person_counts_in_the_account_with_their_engagement_when_last_scored_halved_every_half_life() -> None:
    summed = AccountEngagement(half_life_days=30)
    summed.add(10, AT - timedelta(days=60))
    summed.add(8, AT - timedelta(days=30))

    assert account_value(summed.value_at(AT)) == 10 * 0.25 + 8 * 0.5
    assert account_value(summed.value_at(AT + timedelta(days=30))) == 10 * 0.125 + 8 * 0.25


def test_a_contribution_taken_back_leaves_the_account_as_it_was() -> None:
    summed = AccountEngagement(half_life_days=7)
    summed.add(12.5, AT - timedelta(days=3))
    summed.add(40, AT - timedelta(days=1))
    summed.add(-40, AT - timedelta(days=1))

    assert account_value(summed.value_at(AT)) == round(12.5 * 0.5 ** (3 / 7), 6)


def test_an_account_read_as_of_an_earlier_moment_than_its_latest_counts_nobody_for_more_than_they_had() -> None:
    summed = AccountEngagement(half_life_days=30)
    summed.add(10, AT)

    assert account_value(summed.value_at(AT - timedelta(days=30))) == 10


def test_an_account_summed_over_centuries_of_half_lives_stays_finite_and_exact() -> None:
    summed = AccountEngagement(half_life_days=1)
    summed.add(50, AT)
    for day in range(1, 2_001):
        summed.add(1, AT + timedelta(days=day))
        summed.add(-1, AT + timedelta(days=day))
    summed.add(20, AT + timedelta(days=2_000))

    assert summed.reference is not None and summed.reference > AT
    assert account_value(summed.value_at(AT + timedelta(days=2_001))) == 10


def test_an_account_value_is_never_negative_and_kept_to_a_millionth() -> None:
    assert account_value(-1e-12) == 0
    assert account_value(9.999_999_999_8) == 10
    assert account_value(1.234_567_89) == 1.234568


contributions = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=200, allow_nan=False),
        st.floats(min_value=0, max_value=365, allow_nan=False).map(lambda days: AT + timedelta(days=days)),
    ),
    max_size=30,
)


@settings(max_examples=200)
@given(contributions, st.randoms(use_true_random=False))
def test_an_account_is_the_sum_of_its_contributions_in_whatever_order_they_come(
    added: list[tuple[float, datetime]], order: Any
) -> None:
    until = AT + timedelta(days=400)
    shuffled = list(added)
    order.shuffle(shuffled)
    summed = AccountEngagement(half_life_days=30)
    for points, at in shuffled:
        summed.add(points, at)

    expected = math.fsum(points * 0.5 ** ((until - at).total_seconds() / 86_400 / 30) for points, at in added)
    assert summed.value_at(until) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --- determinism -------------------------------------------------------------------------------------------

activity_types = st.sampled_from(["email_click", "content_download", "pricing_page_view", "webinar_attended"])
ages = st.floats(min_value=-5, max_value=400, allow_nan=False).map(lambda days: timedelta(days=days))
activities_strategy = st.lists(
    st.builds(
        lambda kind, age: EngagementEvent(kind, AT - age), st.one_of(activity_types, st.just("demo_request")), ages
    ),
    max_size=25,
)
leads = st.fixed_dictionaries(
    {
        "title": st.sampled_from(TITLES),
        "company_size": st.sampled_from(SIZES),
        "email": st.sampled_from(["kim@acme.com", "kim@gmail.com", None]),
    }
)


def lead_events(lead: dict[str, object], activities: list[EngagementEvent]) -> list[ScoreResult]:
    """Applies a lead's activities one at a time, each at its own time, as the consumers do."""
    known: list[EngagementEvent] = []
    results = []
    for event in activities:
        known.append(event)
        results.append(scored(DEFAULT_MODEL_V2, lead, list(known), at=event.occurred_at))
    return results


@settings(max_examples=200, deadline=None)
@given(leads, activities_strategy)
def test_the_same_events_in_the_same_order_give_the_same_scores(
    lead: dict[str, object], activities: list[EngagementEvent]
) -> None:
    first = lead_events(lead, activities)
    replayed = lead_events(dict(lead), [EngagementEvent(a.type, a.occurred_at) for a in activities])

    assert replayed == first


@settings(max_examples=200, deadline=None)
@given(leads, activities_strategy, st.randoms(use_true_random=False))
def test_the_order_of_the_activities_does_not_change_the_score(
    lead: dict[str, object], activities: list[EngagementEvent], random: Any
) -> None:
    shuffled = list(activities)
    random.shuffle(shuffled)

    assert scored(DEFAULT_MODEL_V2, lead, shuffled) == scored(DEFAULT_MODEL_V2, lead, activities)


@settings(max_examples=100, deadline=None)
@given(leads, activity_types, ages, st.integers(1, 30), st.randoms(use_true_random=False))
def test_permuting_identical_activities_among_others_does_not_change_the_score(
    lead: dict[str, object], kind: str, age: timedelta, copies: int, random: Any
) -> None:
    same = [EngagementEvent(kind, AT - age) for _ in range(copies)]
    others = [activity("email_click", days_ago=1), activity("webinar_attended", days_ago=45)]
    mixed = same + others
    random.shuffle(mixed)

    assert scored(DEFAULT_MODEL_V2, lead, mixed) == scored(DEFAULT_MODEL_V2, lead, others + same)
