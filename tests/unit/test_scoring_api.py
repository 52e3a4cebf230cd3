"""scoring's HTTP API in-process on SQLite: the model as versioned data, lead scores with their history,
simulate, calibration and rescore. Events are applied through scoring's own handlers, in its own database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from baton.auth import issue_token
from baton.bus import Record
from baton.consumer import EventConsumer
from baton.events import CloudEvent, EventData, LeadActivity, LeadReceived, LeadStatusChanged
from baton.runtime import ServiceRuntime
from baton_scoring.app import create_app
from baton_scoring.consumers import HANDLERS
from baton_scoring.model import DEFAULT_MODEL_V2
from baton_scoring.models import Account
from baton_scoring.settings import ScoringSettings
from tests.unit.conftest import assert_problem
from tests.unit.test_scoring_accounts import assert_accounts_match_their_people, kept_and_recomputed

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Scoring:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    admin: dict[str, str]

    def token(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.runtime.signing_secret, scopes=list(scopes))}"}

    async def apply(self, *events: EventData) -> None:
        """Applies events with scoring's handlers, as its consumer would."""
        consumer = EventConsumer(
            group="scoring", handlers=HANDLERS, bus=self.runtime.bus, sessions=self.runtime.sessions
        )
        await consumer.on_batch([Record.from_event(CloudEvent.wrap(e, source="/baton/test", time=NOW)) for e in events])


@pytest.fixture
async def scoring(tmp_path: Path) -> AsyncIterator[Scoring]:
    app = create_app(ScoringSettings(data_dir=tmp_path), clock=lambda: NOW)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        runtime: ServiceRuntime = app.state.runtime
        admin = {"Authorization": f"Bearer {issue_token(runtime.signing_secret, scopes=['admin'])}"}
        yield Scoring(client=client, runtime=runtime, admin=admin)


def received(lead_id: str, *, days_ago: float = 1, **changes: Any) -> LeadReceived:
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "email": f"{lead_id}@acme.example",
        "title": "Marketing Manager",
        "company_size": 300,
        "source": "webinar",
        "campaign": "spring",
        "received_at": NOW - timedelta(days=days_ago),
    }
    return LeadReceived.model_validate(fields | changes)


def proposal(**changes: Any) -> dict[str, Any]:
    return DEFAULT_MODEL_V2.model_dump(mode="json") | changes


async def test_the_model_in_force_is_version_2_the_default_model(scoring: Scoring) -> None:
    response = await scoring.client.get("/v1/model", headers=scoring.admin)

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["model"] == DEFAULT_MODEL_V2.model_dump(mode="json")


async def test_every_put_is_a_new_version_and_old_versions_stay_readable(scoring: Scoring) -> None:
    first = await scoring.client.put("/v1/model", json=proposal(mql_threshold=50), headers=scoring.admin)
    second = await scoring.client.put("/v1/model", json=proposal(mql_threshold=50), headers=scoring.admin)

    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["version"], second.json()["version"]) == (3, 4)
    versions = await scoring.client.get("/v1/model/versions", headers=scoring.admin)
    assert [v["version"] for v in versions.json()] == [4, 3, 2, 1]
    in_force = await scoring.client.get("/v1/model", headers=scoring.admin)
    assert (in_force.json()["version"], in_force.json()["model"]["mql_threshold"]) == (4, 50)
    first_version = await scoring.client.get("/v1/model/versions/1", headers=scoring.admin)
    assert first_version.json()["model"] == DEFAULT_MODEL_V2.model_dump(mode="json")
    missing = await scoring.client.get("/v1/model/versions/99", headers=scoring.admin)
    assert_problem(missing, 404)


async def test_a_bad_model_is_refused_with_422_naming_the_rule_and_no_version_is_added(scoring: Scoring) -> None:
    rules = [*DEFAULT_MODEL_V2.model_dump(mode="json")["fit_rules"]]
    rules.append({"name": "greedy titles", "op": "regex", "attribute": "title", "pattern": "(a+)+$", "points": 5})

    response = await scoring.client.put("/v1/model", json=proposal(fit_rules=rules), headers=scoring.admin)

    problem = assert_problem(response, 422)
    [error] = problem["errors"]
    assert error["loc"] == ["fit_rules", len(rules) - 1, "pattern"]
    assert "greedy titles" in error["msg"]
    assert "greedy titles" in problem["detail"]
    versions = await scoring.client.get("/v1/model/versions", headers=scoring.admin)
    assert [v["version"] for v in versions.json()] == [2, 1]


async def test_only_an_admin_reads_or_changes_the_model(scoring: Scoring) -> None:
    reader = scoring.token("leads:read")

    assert_problem(await scoring.client.get("/v1/model", headers=reader), 403)
    assert_problem(await scoring.client.put("/v1/model", json=proposal(), headers=reader), 403)
    assert_problem(await scoring.client.get("/v1/model"), 401)


async def test_a_lead_score_shows_every_rule_that_fired_and_its_history(scoring: Scoring) -> None:
    await scoring.apply(
        received("l1"),
        LeadActivity(lead_id="l1", activity_type="webinar_attended", occurred_at=NOW - timedelta(days=1)),
    )

    response = await scoring.client.get("/v1/leads/l1/score", headers=scoring.token("leads:read"))

    assert response.status_code == 200
    body = response.json()
    assert (body["score"], body["fit_grade"], body["status"], body["cycle"], body["model_version"]) == (
        30,
        "C",
        "nurture",
        1,
        2,
    )
    assert [(line["rule"], line["kind"], line["points"]) for line in body["breakdown"]] == [
        ("title: manager", "fit", 10),
        ("company size: mid-market", "fit", 10),
        ("engagement: webinar_attended", "engagement", 10),
        ("account engagement", "account", 0),
    ]
    assert [(h["score"], h["cause"]) for h in body["history"]] == [(20, "received"), (30, "activity")]
    assert_problem(await scoring.client.get("/v1/leads/nobody/score", headers=scoring.admin), 404)


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_prometheus_counts_leads_scored_and_qualified_by_model_version(scoring: Scoring) -> None:
    before = (await scoring.client.get("/metrics")).text

    await scoring.apply(
        received("m1"),
        received("m2", title="CEO", company_size=5_000),
        LeadActivity(lead_id="m1", activity_type="demo_request", occurred_at=NOW),
    )

    after = (await scoring.client.get("/metrics")).text
    scored = "baton_scoring_leads_scored_total"
    qualified = "baton_scoring_leads_qualified_total"
    version = {"model_version": "2"}
    # m1 and m2 received, and m1's demo request: it adds no points, but its score is what qualified m1.
    assert _sample(after, scored, version) - _sample(before, scored, version) == 3
    for reason in ("threshold", "hand-raiser"):
        labels = version | {"reason": reason}
        assert _sample(after, qualified, labels) - _sample(before, qualified, labels) == 1
    latency = "baton_scoring_latency_seconds_count"
    assert _sample(after, latency, {}) - _sample(before, latency, {}) == 3


def _status(lead_id: str, status: str, reason: str | None = None) -> LeadStatusChanged:
    return LeadStatusChanged.model_validate(
        {
            "lead_id": lead_id,
            "assignment_id": f"a-{lead_id}",
            "rep_id": "rep-1",
            "status": status,
            "reason": reason,
            "occurred_at": NOW,
        }
    )


async def test_simulate_counts_what_a_proposal_would_change_per_source_and_campaign_and_touches_nothing(
    scoring: Scoring,
) -> None:
    await scoring.apply(
        received("s1"),  # 20 points: an MQL only if the bar drops to 20
        received("s2", title="CEO", company_size=5_000, source="ads", campaign=None),  # 45: an MQL either way
        received("s3", title="Engineer", days_ago=60),  # outside a 30-day window
    )
    before = (await scoring.client.get("/v1/leads/s1/score", headers=scoring.admin)).json()

    response = await scoring.client.post(
        "/v1/model:simulate", json={"model": proposal(mql_threshold=20), "days": 30}, headers=scoring.admin
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current_version"] == 2
    assert body["total"]["counts"] == {
        "leads": 2,
        "grade_changed": 0,
        "grade_up": 0,
        "grade_down": 0,
        "mql_before": 1,
        "mql_after": 2,
        "newly_mql": 1,
        "no_longer_mql": 0,
    }
    assert [(g["source"], g["campaign"], g["counts"]["newly_mql"]) for g in body["groups"]] == [
        ("ads", None, 0),
        ("webinar", "spring", 1),
    ]
    assert (await scoring.client.get("/v1/leads/s1/score", headers=scoring.admin)).json() == before
    versions = await scoring.client.get("/v1/model/versions", headers=scoring.admin)
    assert [v["version"] for v in versions.json()] == [2, 1]
    bad = await scoring.client.post("/v1/model:simulate", json={"model": {"fit_rules": []}}, headers=scoring.admin)
    assert_problem(bad, 422)


async def test_calibration_counts_sales_outcomes_per_band_and_grade_and_suggests_a_threshold(
    scoring: Scoring,
) -> None:
    # Executives at large companies (45, A) are accepted; managers who crossed by engagement (40, C) are not.
    executives = [received(f"x{n}", title="CEO", company_size=5_000) for n in range(3)]
    managers = [received(f"m{n}") for n in range(3)]
    crossings = [
        LeadActivity(lead_id=m.lead_id, activity_type="webinar_attended", occurred_at=NOW - timedelta(hours=h))
        for m in managers
        for h in (2, 1)
    ]
    await scoring.apply(*executives, *managers, *crossings)
    await scoring.apply(
        *(_status(x.lead_id, "accepted") for x in executives),
        _status("x0", "won"),
        *(_status(m.lead_id, "rejected", "no budget") for m in managers[:2]),
    )

    response = await scoring.client.get(
        "/v1/calibration", params={"target_accept_rate": 0.9, "min_decisions": 3}, headers=scoring.admin
    )

    assert response.status_code == 200, response.text
    body = response.json()
    rows = {(r["band_low"], r["grade"]): r for r in body["rows"]}
    assert set(rows) == {(40, "A"), (40, "C")}
    assert (rows[40, "A"]["accepted"], rows[40, "A"]["won"], rows[40, "A"]["qualified"]) == (3, 1, 1)
    assert (rows[40, "C"]["rejected"], rows[40, "C"]["pending"], rows[40, "C"]["rejected_by_reason"]) == (
        2,
        1,
        {"no budget": 2},
    )
    assert (body["suggestion"]["threshold"], body["suggestion"]["decisions"]) == (45, 3)
    default_target = await scoring.client.get("/v1/calibration", headers=scoring.admin)
    assert default_target.json()["suggestion"]["why"] == "too_few_decisions"
    assert default_target.json()["suggestion"]["target_accept_rate"] == 0.7


async def test_a_model_with_another_half_life_sums_every_account_afresh_under_it(
    scoring: Scoring,
) -> None:
    webinar = [{"type": "webinar_attended"}]
    await scoring.apply(
        *(received(p, days_ago=20, email=f"{p}@acme.example", activities=webinar) for p in ("ann", "bob")),
        received("cy", days_ago=5, email="cy@globex.example", activities=webinar),
    )
    runtime = scoring.runtime

    response = await scoring.client.put("/v1/model", json=proposal(half_life_days=7.0), headers=scoring.admin)

    assert response.status_code == 200
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(Account))).all()
        compared = await kept_and_recomputed(session)
    assert {(row.domain, row.half_life_days) for row in rows} == {("acme.example", 7.0), ("globex.example", 7.0)}
    assert_accounts_match_their_people(compared)
    assert compared["acme.example"][0] == pytest.approx(20)  # both as of their one event, 20 days ago
