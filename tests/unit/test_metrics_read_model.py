"""metrics' read model through the real consumer and inbox, read back through its APIs: one scenario of four
leads — won, reassigned after a breach, overdue, rejected — delivered twice and counted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton.auth import issue_token
from baton.bus import Record
from baton.consumer import EventConsumer
from baton.events import (
    CloudEvent,
    EventData,
    LeadActivity,
    LeadAssigned,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    RoutingAttributes,
    SlaBreached,
)
from baton_metrics.app import create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.domain import RELATIVE_ACCURACY
from baton_metrics.settings import MetricsSettings

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=20)
MAY = {"from": "2024-05-01", "to": "2024-05-31"}
WEBINAR = {"source": "webinar", "campaign": "spring"}
ADS = {"source": "ads", "campaign": "summer"}
ANA = {"rep_id": "rep-ana", "team": "emea"}
BEN = {"rep_id": "rep-ben", "team": "amer"}


def within_accuracy(expected: float) -> Any:
    """A percentile read from the duration buckets: within their relative accuracy of the true value."""
    return pytest.approx(expected, rel=RELATIVE_ACCURACY * 1.001)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _record(data: EventData, at: datetime) -> Record:
    return Record.from_event(CloudEvent.wrap(data, source="/test", time=at))


def _received(lead: str, origin: dict[str, str], at: datetime = T0) -> Record:
    return _record(LeadReceived(lead_id=lead, email=f"{lead}@example.com", received_at=at, **origin), at)


def _qualified(lead: str, origin: dict[str, str], at: datetime) -> Record:
    attributes = RoutingAttributes(email=f"{lead}@example.com", first_name="Jo", **origin)
    return _record(LeadQualified(lead_id=lead, score=60, fit_grade="A", reason="threshold", lead=attributes), at)


def _assigned(
    lead: str, assignment: str, rep: dict[str, str], origin: dict[str, str], at: datetime, *, accept_within: float
) -> Record:
    data = LeadAssigned(
        lead_id=lead,
        assignment_id=assignment,
        rule="default",
        attempt=1,
        accept_due_at=at + timedelta(seconds=accept_within),
        touch_due_at=at + timedelta(hours=4),
        **rep,
        **origin,
    )
    return _record(data, at)


def _status(
    lead: str, assignment: str, rep: dict[str, str], origin: dict[str, str], status: str, at: datetime, **extra: Any
) -> Record:
    data = LeadStatusChanged(
        lead_id=lead, assignment_id=assignment, status=status, occurred_at=at, **rep, **origin, **extra
    )
    return _record(data, at)


def scenario() -> list[Record]:
    """l1 won on time; l2's accept SLA breached and reassigned to Ana (now at risk); l3 overdue; l4 rejected."""
    return [
        # l1: webinar → Ana, accepted in 10 min, contacted at 30 min, qualified and won.
        _received("l1", WEBINAR),
        _record(
            LeadScored(lead_id="l1", score=60, fit_grade="A", engagement=10, breakdown=[], model_version=1), _at(2)
        ),
        _qualified("l1", WEBINAR, _at(3)),
        _assigned("l1", "a1", ANA, WEBINAR, _at(5), accept_within=900),
        _status("l1", "a1", ANA, WEBINAR, "accepted", _at(600)),
        _record(LeadActivity(lead_id="l1", activity_type="email_click", occurred_at=_at(900)), _at(900)),
        _status("l1", "a1", ANA, WEBINAR, "contacted", _at(1800)),
        _status("l1", "a1", ANA, WEBINAR, "qualified", _at(3600)),
        _status("l1", "a1", ANA, WEBINAR, "won", _at(7200), amount=Decimal("1000")),
        # l2: ads → Ben, who lets the accept SLA run out; reassigned to Ana at 10 min, due at 21 min.
        _received("l2", ADS),
        _qualified("l2", ADS, _at(4)),
        _assigned("l2", "a2", BEN, ADS, _at(6), accept_within=594),
        _record(
            SlaBreached(
                lead_id="l2",
                assignment_id="a2",
                rep_id="rep-ben",
                sla="accept",
                due_at=_at(600),
                breached_at=_at(600),
                action="reassigned",
            ),
            _at(600),
        ),
        _assigned("l2", "a3", ANA, ADS, _at(600), accept_within=660),
        # l3: webinar → Ben, due at 12 min and still not accepted.
        _received("l3", WEBINAR),
        _qualified("l3", WEBINAR, _at(5)),
        _assigned("l3", "a4", BEN, WEBINAR, _at(7), accept_within=713),
        # l4: ads → Ana, who rejects it; handoff recycles it.
        _received("l4", ADS),
        _qualified("l4", ADS, _at(6)),
        _assigned("l4", "a5", ANA, ADS, _at(8), accept_within=900),
        _status("l4", "a5", ANA, ADS, "rejected", _at(360), reason="bad fit"),
        _record(LeadRecycled(lead_id="l4", reason="rejected by sales: bad fit"), _at(361)),
    ]


@dataclass
class Metrics:
    client: httpx.AsyncClient
    consumer: EventConsumer
    settings: MetricsSettings

    def token(self, *scopes: str, rep_id: str | None = None, team: str | None = None) -> dict[str, str]:
        token = issue_token(self.settings.signing_secret(), scopes=list(scopes), rep_id=rep_id, team=team)
        return {"Authorization": f"Bearer {token}"}

    @property
    def reader(self) -> dict[str, str]:
        return self.token("metrics:read")

    async def get(self, path: str, headers: dict[str, str] | None = None, /, **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=headers or self.reader)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def metrics(tmp_path: Path) -> AsyncIterator[Metrics]:
    settings = MetricsSettings(data_dir=tmp_path)
    app = create_app(settings, clock=lambda: NOW)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        runtime = app.state.runtime
        consumer = EventConsumer(
            group="metrics", handlers=HANDLERS, bus=runtime.bus, sessions=runtime.sessions, clock=lambda: NOW
        )
        yield Metrics(client=client, consumer=consumer, settings=settings)


@pytest.fixture
async def applied(metrics: Metrics) -> Metrics:
    """The scenario applied in two batches (one transaction each), then redelivered whole in a third."""
    records = scenario()
    await metrics.consumer.on_batch(records[:12])
    await metrics.consumer.on_batch(records[12:])
    await metrics.consumer.on_batch(records)
    return metrics


EXPECTED_TOTALS = {
    "received": 4,
    "mql": 4,
    "assigned": 5,
    "accepted": 1,
    "rejected": 1,
    "contacted": 1,
    "qualified": 1,
    "won": 1,
    "lost": 0,
    "erased": 0,
    "won_amount": "1000.00",
    "recycled": 1,
    "reassigned": 1,
    "escalated": 0,
    "accept_sla_met": 1,
    "accept_sla_breached": 1,
    "touch_sla_met": 1,
    "touch_sla_breached": 0,
    "rejected_by_reason": {"bad fit": 1},
}


async def test_every_event_delivered_twice_is_counted_once_by_every_kpi(applied: Metrics) -> None:
    report = await applied.get("/v1/kpis", **MAY)

    assert report["totals"] == EXPECTED_TOTALS
    assert report["rates"] == {"mql_to_sal": 0.25, "sal_to_sql": 1.0, "sql_to_won": 1.0}
    assert report["sla_compliance"] == {"accept": 0.5, "touch": 1.0, "overall": 0.6667}
    assert report["speed_to_lead"]["count"] == 1
    assert report["speed_to_lead"]["p50_minutes"] == within_accuracy(1795 / 60)
    assert report["time_to_accept"]["count"] == 1
    assert report["time_to_accept"]["p90_minutes"] == within_accuracy(595 / 60)


async def test_kpis_by_rep_split_the_sla_and_the_breach_goes_to_the_rep_who_let_it_run_out(applied: Metrics) -> None:
    report = await applied.get("/v1/kpis", group_by="rep", **MAY)

    groups = {group["key"]: group for group in report["groups"]}
    assert set(groups) == {"", "rep-ana", "rep-ben"}
    assert groups["rep-ben"]["totals"]["accept_sla_breached"] == 1
    assert groups["rep-ben"]["totals"]["reassigned"] == 1
    assert groups["rep-ben"]["sla_compliance"]["accept"] == 0.0
    assert groups["rep-ana"]["sla_compliance"] == {"accept": 1.0, "touch": 1.0, "overall": 1.0}
    assert groups["rep-ana"]["speed_to_lead"]["count"] == 1
    assert groups["rep-ben"]["speed_to_lead"] == {
        "count": 0,
        "p50_minutes": None,
        "p90_minutes": None,
        "p99_minutes": None,
    }


async def test_recycled_lead_counts_under_the_source_campaign_and_rep_it_had(applied: Metrics) -> None:
    report = await applied.get("/v1/kpis", group_by="campaign", rep_id="rep-ana", **MAY)

    assert {group["key"]: group["totals"]["recycled"] for group in report["groups"]} == {"spring": 0, "summer": 1}


async def test_empty_range_answers_zeros_and_null_rates(applied: Metrics) -> None:
    report = await applied.get("/v1/kpis", **{"from": "2023-01-01", "to": "2023-01-31"})

    assert report["totals"]["received"] == 0
    assert report["rates"] == {"mql_to_sal": None, "sal_to_sql": None, "sql_to_won": None}
    assert report["sla_compliance"] == {"accept": None, "touch": None, "overall": None}
    assert report["speed_to_lead"]["p50_minutes"] is None
    assert report["cost"] is None


async def test_funnel_shows_each_stage_and_its_share_of_the_stage_before(applied: Metrics) -> None:
    funnel = await applied.get("/v1/funnel", **MAY)

    assert [(stage["stage"], stage["count"], stage["from_previous"]) for stage in funnel["stages"]] == [
        ("received", 4, None),
        ("mql", 4, 1.0),
        ("assigned", 5, 1.25),
        ("accepted", 1, 0.2),
        ("contacted", 1, 1.0),
        ("qualified", 1, 1.0),
        ("won", 1, 1.0),
    ]
    assert (funnel["rejected"], funnel["rejected_by_reason"], funnel["recycled"], funnel["lost"]) == (
        1,
        {"bad fit": 1},
        1,
        0,
    )


async def test_pipeline_times_each_step_of_baton_from_the_events_own_times(applied: Metrics) -> None:
    pipeline = await applied.get("/v1/pipeline", **MAY)

    steps = {step["step"]: step for step in pipeline["steps"]}
    assert steps["received_to_scored"]["count"] == 1
    assert steps["received_to_scored"]["p50_seconds"] == within_accuracy(2)
    assert steps["scored_to_qualified"]["count"] == 1
    assert steps["scored_to_qualified"]["p99_seconds"] == within_accuracy(1)
    # Each lead's first assignment after its qualification: 2 s each.
    assert steps["qualified_to_assigned"]["count"] == 4
    assert steps["qualified_to_assigned"]["p50_seconds"] == within_accuracy(2)


async def test_live_board_lists_at_risk_and_breached_open_assignments_with_time_left(applied: Metrics) -> None:
    board = await applied.get("/v1/sla/live")

    assert board["open_assignments"] == 2
    assert [(row["assignment_id"], row["rep_id"], row["sla"], row["seconds_left"]) for row in board["at_risk"]] == [
        ("a3", "rep-ana", "accept", 60.0)
    ]
    assert [(row["assignment_id"], row["rep_id"], row["seconds_left"]) for row in board["breached"]] == [
        ("a4", "rep-ben", -480.0)
    ]
    assert (board["from"], board["to"]) == ("2024-04-02", "2024-05-01")
    assert board["reps"] == [
        {"rep_id": "rep-ana", "met": 2, "breached": 0, "compliance": 1.0},
        {"rep_id": "rep-ben", "met": 0, "breached": 1, "compliance": 0.0},
    ]


async def test_journey_lists_a_leads_events_in_order_with_the_time_between_and_no_personal_data(
    applied: Metrics,
) -> None:
    journey = await applied.get("/v1/leads/l1/journey")

    steps = journey["steps"]
    assert [step["event_type"].removeprefix("baton.") for step in steps] == [
        "lead.received.v1",
        "lead.scored.v1",
        "lead.qualified.v1",
        "lead.assigned.v1",
        "lead.status_changed.v1",
        "lead.activity.v1",
        "lead.status_changed.v1",
        "lead.status_changed.v1",
        "lead.status_changed.v1",
    ]
    assert [step["seconds_since_previous"] for step in steps] == [None, 2, 1, 2, 595, 300, 900, 1800, 3600]
    assert [step["facts"].get("status") for step in steps][4:] == ["accepted", None, "contacted", "qualified", "won"]
    assert steps[8]["facts"]["amount"] == "1000"
    assert "l1@example.com" not in str(journey) and "Jo" not in str(journey)


async def test_erased_lead_leaves_no_journey_and_every_count(applied: Metrics) -> None:
    await applied.consumer.on_record(_record(LeadErased(lead_id="l1"), _at(8000)))
    # A late event of the erased lead is counted but kept in no journey.
    await applied.consumer.on_record(
        _status("l1", "a1", ANA, WEBINAR, "lost", _at(9000)),
    )

    journey = await applied.client.get("/v1/leads/l1/journey", headers=applied.reader)
    report = await applied.get("/v1/kpis", **MAY)
    other = await applied.get("/v1/leads/l2/journey")

    assert journey.status_code == 404
    assert report["totals"] == {**EXPECTED_TOTALS, "lost": 1}
    assert len(other["steps"]) == 5


async def test_rep_token_sees_only_its_own_rows_everywhere(applied: Metrics) -> None:
    ana = applied.token("metrics:read", rep_id="rep-ana")

    report = await applied.get("/v1/kpis", ana, group_by="rep", **MAY)
    board = await applied.get("/v1/sla/live", ana)
    funnel = await applied.get("/v1/funnel", ana, **MAY)
    own_journey = await applied.client.get("/v1/leads/l1/journey", headers=ana)
    others_journey = await applied.client.get("/v1/leads/l3/journey", headers=ana)
    others_kpis = await applied.client.get("/v1/kpis", params={"rep_id": "rep-ben"}, headers=ana)

    assert [group["key"] for group in report["groups"]] == ["rep-ana"]
    assert report["totals"]["assigned"] == 3
    assert [row["assignment_id"] for row in board["at_risk"] + board["breached"]] == ["a3"]
    assert [rep["rep_id"] for rep in board["reps"]] == ["rep-ana"]
    assert funnel["stages"][2] == {"stage": "assigned", "count": 3, "from_previous": None}
    assert own_journey.status_code == 200
    assert others_journey.status_code == 404
    assert others_kpis.status_code == 403


async def test_team_lead_token_sees_its_teams_rows_only(applied: Metrics) -> None:
    amer = applied.token("metrics:read", team="amer")

    report = await applied.get("/v1/kpis", amer, group_by="team", **MAY)
    board = await applied.get("/v1/sla/live", amer)
    emea = await applied.client.get("/v1/sla/live", params={"team": "emea"}, headers=amer)
    journey = await applied.client.get("/v1/leads/l1/journey", headers=amer)

    assert [group["key"] for group in report["groups"]] == ["amer"]
    assert [row["assignment_id"] for row in board["at_risk"] + board["breached"]] == ["a4"]
    assert emea.status_code == 403
    assert journey.status_code == 404


@pytest.mark.parametrize(
    "path", ["/v1/kpis", "/v1/funnel", "/v1/pipeline", "/v1/sla/live", "/v1/leads/l1/journey", "/v1/targets"]
)
async def test_reads_need_a_token_with_metrics_read(applied: Metrics, path: str) -> None:
    anonymous = await applied.client.get(path)
    wrong_scope = await applied.client.get(path, headers=applied.token("leads:read"))
    admin = await applied.client.get(path, headers=applied.token("admin"))

    assert (anonymous.status_code, wrong_scope.status_code, admin.status_code) == (401, 403, 200)


async def test_targets_and_costs_are_set_by_admins_only(metrics: Metrics) -> None:
    reader = metrics.reader
    refused = [
        await metrics.client.put("/v1/targets", json={"mqls_per_month": 10}, headers=reader),
        await metrics.client.put("/v1/campaigns/spring/cost", json={"amount": "1", "currency": "EUR"}, headers=reader),
    ]

    assert [answer.status_code for answer in refused] == [403, 403]
    assert await metrics.get("/v1/targets") == {
        "mqls_per_month": None,
        "sla_compliance": None,
        "speed_to_lead_minutes": None,
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/targets", {"sla_compliance": 1.5}),
        ("/v1/targets", {"mqls_per_month": -1}),
        ("/v1/targets", {"speed_to_lead_minutes": 0}),
        ("/v1/targets", {"mql_per_month": 10}),
        ("/v1/campaigns/spring/cost", {"amount": "-1", "currency": "EUR"}),
        ("/v1/campaigns/spring/cost", {"amount": "1", "currency": "euro"}),
        ("/v1/campaigns/spring/cost", {"amount": "1"}),
    ],
)
async def test_bad_targets_and_costs_are_refused_with_the_failing_field(
    metrics: Metrics, path: str, body: dict[str, Any]
) -> None:
    answer = await metrics.client.put(path, json=body, headers=metrics.token("admin"))

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_kpis_report_mqls_against_target_and_cost_per_mql_and_roi_where_costs_are_known(
    applied: Metrics,
) -> None:
    admin = applied.token("admin")
    first = await applied.client.put("/v1/targets", json={"mqls_per_month": 62, "sla_compliance": 0.9}, headers=admin)
    second = await applied.client.put("/v1/targets", json={"speed_to_lead_minutes": 15}, headers=admin)
    cost = await applied.client.put(
        "/v1/campaigns/spring/cost", json={"amount": "500", "currency": "EUR"}, headers=admin
    )

    report = await applied.get("/v1/kpis", group_by="campaign", **MAY)

    assert first.status_code == second.status_code == cost.status_code == 200
    assert second.json() == {"mqls_per_month": 62, "sla_compliance": 0.9, "speed_to_lead_minutes": 15.0}
    assert cost.json() == {"campaign": "spring", "amount": "500.00", "currency": "EUR"}
    assert report["targets"] == {
        "mqls_target": 62.0,
        "mqls": 4,
        "mqls_attainment": 0.0645,
        "sla_compliance_target": 0.9,
        "sla_compliance_met": False,
        "speed_to_lead_minutes_target": 15.0,
        "speed_to_lead_met": False,
    }
    groups = {group["key"]: group["cost"] for group in report["groups"]}
    # spring: two MQLs and one deal of 1000 for 500.
    assert groups == {
        "spring": {"amount": "500.00", "currency": "EUR", "cost_per_mql": "250.00", "roi": 1.0},
        "summer": None,
    }
    assert report["cost"] == groups["spring"]
