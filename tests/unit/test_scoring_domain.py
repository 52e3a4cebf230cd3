"""Scoring as pure functions: fit grade, decaying engagement, hand-raisers and disqualifiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.scoring_first_model import (
    DEFAULT_MODEL,
    EngagementEvent,
    FitRule,
    LeadFacts,
    Score,
    ScoringModel,
    qualification_reason,
    score_lead,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def facts(
    *,
    title: str | None = None,
    company_size: int | None = None,
    email_domain: str | None = "acme.com",
    industry: str | None = None,
    country: str | None = None,
) -> LeadFacts:
    return LeadFacts(
        title=title, company_size=company_size, industry=industry, country=country, email_domain=email_domain
    )


def activity(kind: str, *, days_ago: float = 0) -> EngagementEvent:
    return EngagementEvent(type=kind, occurred_at=NOW - timedelta(days=days_ago))


def score(
    lead: LeadFacts, activities: list[EngagementEvent] | None = None, model: ScoringModel = DEFAULT_MODEL
) -> Score:
    return score_lead(model, lead, activities or [], now=NOW)


def rules(result: Score) -> dict[str, int]:
    return {line.rule: line.points for line in result.breakdown}


def test_executive_at_a_large_company_gets_grade_a_and_qualifies_by_threshold() -> None:
    result = score(facts(title="Chief Marketing Officer", company_size=2_500))

    assert result.fit_grade == "A"
    assert result.score == 45
    assert rules(result) == {"title: executive": 30, "company size: enterprise": 15}
    assert qualification_reason(DEFAULT_MODEL, result) == "threshold"


def test_engineer_at_a_ten_person_company_does_not_qualify() -> None:
    result = score(facts(title="Engineer", company_size=10))

    assert result.fit_grade == "D"
    assert result.score == 0
    assert qualification_reason(DEFAULT_MODEL, result) is None


def test_demo_request_qualifies_as_hand_raiser_whatever_the_fit() -> None:
    result = score(facts(title="Engineer", company_size=10), [activity("demo_request")])

    assert result.fit_grade == "D"
    assert result.hand_raised
    assert qualification_reason(DEFAULT_MODEL, result) == "hand-raiser"


def test_high_score_with_poor_fit_does_not_qualify_by_threshold() -> None:
    engaged_but_unfit = score(facts(title="Engineer", company_size=10), [activity("webinar_attended")] * 5)

    assert engaged_but_unfit.score >= DEFAULT_MODEL.mql_threshold
    assert engaged_but_unfit.fit_grade == "D"
    assert qualification_reason(DEFAULT_MODEL, engaged_but_unfit) is None


def test_engagement_halves_after_one_half_life() -> None:
    fresh = score(facts(), [activity("webinar_attended")])
    month_old = score(facts(), [activity("webinar_attended", days_ago=30)])

    assert fresh.engagement == 10
    assert month_old.engagement == 5
    assert rules(month_old)["engagement"] == 5


def test_engagement_keeps_decaying_with_age() -> None:
    ages = [0, 15, 30, 60, 120]

    engagement = [score(facts(), [activity("webinar_attended", days_ago=age)]).engagement for age in ages]

    assert engagement == sorted(engagement, reverse=True)
    assert engagement[0] > engagement[-1]


def test_engagement_is_capped() -> None:
    result = score(facts(), [activity("webinar_attended")] * 20)

    assert result.engagement == DEFAULT_MODEL.engagement_cap == 50
    assert result.score == 50


def test_activities_without_points_add_no_engagement() -> None:
    result = score(facts(), [activity("unsubscribe"), activity("page_view")])

    assert result.engagement == 0
    assert "engagement" not in rules(result)


def test_only_the_first_matching_rule_of_a_group_counts() -> None:
    result = score(facts(title="VP Sales Manager"))

    assert rules(result) == {"title: vice president": 25}


def test_free_mail_domain_subtracts_points() -> None:
    business = score(facts(title="Head of Growth", company_size=300, email_domain="acme.com"))
    free_mail = score(facts(title="Head of Growth", company_size=300, email_domain="gmail.com"))

    assert rules(free_mail)["free-mail domain"] == -10
    assert free_mail.score == business.score - 10


def _model_with_competitor_rule() -> ScoringModel:
    competitor = FitRule(
        name="competitor domain", attribute="email_domain", contains_any=["rival.io"], points=0, disqualifies=True
    )
    return DEFAULT_MODEL.model_copy(update={"fit_rules": [*DEFAULT_MODEL.fit_rules, competitor]})


def test_disqualifying_rule_blocks_qualification_even_for_a_hand_raiser() -> None:
    model = _model_with_competitor_rule()
    demo = [activity("demo_request")]

    competitor = score(facts(title="CEO", company_size=5_000, email_domain="rival.io"), demo, model)
    customer = score(facts(title="CEO", company_size=5_000, email_domain="acme.com"), demo, model)

    assert competitor.disqualified
    assert qualification_reason(model, competitor) is None
    assert qualification_reason(model, customer) == "hand-raiser"


@pytest.mark.parametrize(
    ("title", "expected_title_rule"),
    [
        ("Director of Marketing", "title: director or head"),
        ("Vice President, Sales", "title: vice president"),
        ("Marketing Coordinator", None),
        ("Chief Technology Officer", "title: executive"),
        ("CTO", "title: executive"),
        ("President", "title: executive"),
    ],
)
def test_title_earns_the_points_of_its_own_seniority(title: str, expected_title_rule: str | None) -> None:
    result = score(facts(title=title))

    title_rules = [rule for rule in rules(result) if rule.startswith("title:")]
    assert title_rules == ([expected_title_rule] if expected_title_rule else [])
