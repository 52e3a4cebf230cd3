"""What-if: a proposed model replayed over recent leads, counted per source and campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from baton_scoring.engine import EngagementEvent
from baton_scoring.model import DEFAULT_MODEL_V2, ScoringModel, parse_model
from baton_scoring.simulate import SimulatedLead, SimulationCounts, replay, simulate

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def model(**overrides: Any) -> ScoringModel:
    return parse_model(
        {
            "fit_rules": [
                {"name": "executive", "op": "contains_word", "attribute": "title", "words": ["ceo"], "points": 30},
                {"name": "manager", "op": "contains_word", "attribute": "title", "words": ["manager"], "points": 15},
            ],
            "grade_thresholds": {"A": 30, "B": 15, "C": 5},
            "engagement": {"webinar_attended": {"points": 10}},
            "half_life_days": 10,
            "hand_raisers": ["demo_request"],
            "free_mail_domains": ["gmail.com"],
            "mql_threshold": 40,
            "min_grade": "C",
            **overrides,
        }
    )


CURRENT = model()


def lead(
    lead_id: str,
    title: str,
    *activities: tuple[str, float],
    email: str | None = None,
    source: str | None = "webinar",
    campaign: str | None = "spring",
    received_day: float = 0,
) -> SimulatedLead:
    return SimulatedLead(
        lead_id=lead_id,
        attributes={"title": title, "email": email or f"{lead_id}@{lead_id}.example"},
        activities=[EngagementEvent(kind, T0 + timedelta(days=day)) for kind, day in activities],
        received_at=T0 + timedelta(days=received_day),
        source=source,
        campaign=campaign,
    )


def test_the_same_model_changes_nothing() -> None:
    leads = [
        lead("a", "CEO", ("webinar_attended", 0)),
        lead("b", "Manager"),
        lead("c", "Engineer", ("demo_request", 1)),
    ]

    result = simulate(CURRENT, CURRENT, leads)

    assert result.total == SimulationCounts(leads=3, mql_before=2, mql_after=2)


def test_a_higher_threshold_counts_the_leads_that_would_no_longer_be_mqls_by_source_and_campaign() -> None:
    leads = [
        lead("a", "CEO", ("webinar_attended", 0), source="ads", campaign="q2"),  # 40
        lead("b", "CEO", ("webinar_attended", 0), ("webinar_attended", 0), source="ads", campaign="q2"),  # 50
        lead("c", "CEO", ("webinar_attended", 0), source="webinar", campaign="spring"),  # 40
        lead("d", "Engineer", ("demo_request", 0), source="webinar", campaign="spring"),  # hand-raiser
    ]

    result = simulate(CURRENT, model(mql_threshold=45), leads)

    by_group = {(g.source, g.campaign): g.counts for g in result.groups}
    assert by_group == {
        ("ads", "q2"): SimulationCounts(leads=2, mql_before=2, mql_after=1, no_longer_mql=1),
        ("webinar", "spring"): SimulationCounts(leads=2, mql_before=2, mql_after=1, no_longer_mql=1),
    }
    assert result.total == SimulationCounts(leads=4, mql_before=4, mql_after=2, no_longer_mql=2)


def test_a_lower_threshold_counts_the_leads_that_would_become_mqls() -> None:
    leads = [lead("a", "Manager", ("webinar_attended", 0)), lead("b", "Manager")]

    result = simulate(CURRENT, model(mql_threshold=25), leads)

    assert result.total == SimulationCounts(leads=2, mql_before=0, mql_after=1, newly_mql=1)


def test_grade_changes_are_counted_up_and_down() -> None:
    proposed = model(grade_thresholds={"A": 15, "B": 10, "C": 5}, mql_threshold=1000)
    leads = [lead("a", "Manager"), lead("b", "CEO"), lead("c", "Engineer")]

    stricter = simulate(CURRENT, model(grade_thresholds={"A": 31, "B": 16, "C": 5}), leads)
    looser = simulate(CURRENT, proposed, leads)

    assert (stricter.total.grade_changed, stricter.total.grade_down, stricter.total.grade_up) == (2, 2, 0)
    assert (looser.total.grade_changed, looser.total.grade_up, looser.total.grade_down) == (1, 1, 0)


def test_a_lead_that_qualified_at_an_earlier_event_stays_an_mql_though_its_score_decayed_since() -> None:
    # 40 points on day 0; by day 30 the webinar is worth 1.25 and the click below adds nothing.
    cooled = lead("a", "CEO", ("webinar_attended", 0), ("page_view", 30))

    replayed = replay(CURRENT, cooled)

    assert replayed.mql_at == T0
    assert replayed.reason == "threshold"
    assert replayed.score == 31


def test_an_activity_counts_from_its_own_time_not_from_the_leads_arrival() -> None:
    # Received on day 0 with 30 fit points; the webinar comes on day 5: at arrival the lead is not an MQL.
    later = lead("a", "CEO", ("webinar_attended", 5))

    replayed = replay(CURRENT, later)

    assert replayed.mql_at == T0 + timedelta(days=5)


def test_a_proposal_that_disqualifies_competitors_takes_their_hand_raisers_out() -> None:
    competitor_rule = {
        "name": "competitor",
        "op": "email_domain_in",
        "domains": ["rival.io"],
        "points": 0,
        "disqualifies": True,
    }
    proposed = model(fit_rules=[*CURRENT.model_dump()["fit_rules"], competitor_rule])
    leads = [
        lead("a", "Engineer", ("demo_request", 0), email="kim@rival.io"),
        lead("b", "Engineer", ("demo_request", 0)),
    ]

    result = simulate(CURRENT, proposed, leads)

    assert result.total == SimulationCounts(leads=2, mql_before=2, mql_after=1, no_longer_mql=1)


def committee_model() -> ScoringModel:
    committee_rule = {
        "name": "buying committee",
        "op": "gte",
        "attribute": "account_engagement",
        "value": 30,
        "points": 10,
    }
    return model(fit_rules=[*CURRENT.model_dump()["fit_rules"], committee_rule], mql_threshold=35)


def test_an_account_rule_counts_the_colleagues_known_by_then() -> None:
    manager = lead("m", "Manager", ("webinar_attended", 1), email="m@acme.com", received_day=1)
    colleagues = [
        lead(f"c{i}", "Engineer", ("webinar_attended", 0), email=f"c{i}@acme.com", received_day=0) for i in range(3)
    ]
    # Received on day 9 with a webinar from day 0: on day 1 nobody knew of this person yet.
    latecomer = lead("late", "Engineer", ("webinar_attended", 0), email="late@acme.com", received_day=9)

    # On day 1 the manager has 10 and each colleague 10 * 0.5^(1/10) ≈ 9.3: two of them make ≈ 28.7 < 30.
    two = simulate(CURRENT, committee_model(), [manager], colleagues=colleagues[:2])
    three = simulate(CURRENT, committee_model(), [manager], colleagues=colleagues)
    two_and_a_latecomer = simulate(CURRENT, committee_model(), [manager], colleagues=[*colleagues[:2], latecomer])

    assert two.total.newly_mql == 0
    assert three.total == SimulationCounts(leads=1, mql_after=1, newly_mql=1)
    assert two_and_a_latecomer.total.newly_mql == 0


def test_free_mail_leads_form_no_account() -> None:
    people = [lead(f"p{i}", "Manager", ("webinar_attended", 0), email=f"p{i}@gmail.com") for i in range(5)]

    result = simulate(CURRENT, committee_model(), people)

    assert result.total.newly_mql == 0


def test_groups_are_sorted_with_no_source_or_campaign_first() -> None:
    leads = [
        lead("a", "CEO", source="webinar", campaign=None),
        lead("b", "CEO", source=None, campaign="q2"),
        lead("c", "CEO", source="ads", campaign="q2"),
        lead("d", "CEO", source="ads", campaign="q1"),
        lead("e", "CEO", source="webinar", campaign="a"),
    ]

    result = simulate(CURRENT, CURRENT, leads)

    assert [(g.source, g.campaign) for g in result.groups] == [
        (None, "q2"),
        ("ads", "q1"),
        ("ads", "q2"),
        ("webinar", None),
        ("webinar", "a"),
    ]


@st.composite
def simulated_leads(draw: st.DrawFn) -> SimulatedLead:
    activities = draw(
        st.lists(
            st.tuples(st.sampled_from(["webinar_attended", "pricing_page_view", "demo_request"]), st.floats(0, 60)),
            max_size=4,
        )
    )
    return lead(
        draw(st.sampled_from(["a", "b", "c"])),
        draw(st.sampled_from(["CEO", "Head of Sales", "Manager", "Engineer"])),
        *activities,
        email=draw(st.sampled_from(["x@acme.com", "y@acme.com", "z@gmail.com"])),
        source=draw(st.sampled_from(["ads", "webinar", None])),
        campaign=draw(st.sampled_from(["q1", "q2", None])),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(simulated_leads(), max_size=12), st.integers(0, 80))
def test_the_groups_add_up_to_the_total_and_the_mql_counts_balance(leads: list[SimulatedLead], threshold: int) -> None:
    result = simulate(DEFAULT_MODEL_V2, DEFAULT_MODEL_V2.model_copy(update={"mql_threshold": threshold}), leads)

    assert sum((g.counts for g in result.groups), SimulationCounts()) == result.total
    assert result.total.leads == len(leads)
    assert result.total.mql_after - result.total.mql_before == result.total.newly_mql - result.total.no_longer_mql
    assert result.total.grade_changed == 0
