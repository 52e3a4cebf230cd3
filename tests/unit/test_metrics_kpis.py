"""metrics counts each event by its own dimensions, whatever order the topics are read in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from baton.auth import issue_token
from baton.bus import Record
from baton.consumer import EventConsumer
from baton.events import CloudEvent, LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged, RoutingAttributes
from baton_metrics.app import create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.settings import MetricsSettings


def _event(data: Any) -> Record:
    return Record.from_event(CloudEvent.wrap(data, source="/test"))


async def test_kpis_attribute_every_stage_to_the_leads_source_even_when_topics_arrive_out_of_order(
    tmp_path: Path,
) -> None:
    settings = MetricsSettings(data_dir=tmp_path)
    app = create_app(settings)
    now = datetime.now(UTC)
    origin = {"source": "webinar", "campaign": "spring"}
    downstream = [
        _event(
            LeadQualified(lead_id="l1", score=50, fit_grade="A", reason="threshold", lead=RoutingAttributes(**origin))
        ),
        _event(
            LeadAssigned(
                lead_id="l1",
                assignment_id="a1",
                rep_id="rep-1",
                team="emea",
                rule="default",
                attempt=1,
                accept_due_at=now + timedelta(hours=1),
                touch_due_at=now + timedelta(days=1),
                **origin,
            )
        ),
        _event(
            LeadStatusChanged(
                lead_id="l1",
                assignment_id="a1",
                rep_id="rep-1",
                team="emea",
                status="accepted",
                occurred_at=now,
                **origin,
            )
        ),
    ]
    received = _event(LeadReceived(lead_id="l1", email="l1@example.com", received_at=now, **origin))
    reader = {"Authorization": f"Bearer {issue_token(settings.signing_secret(), scopes=['metrics:read'])}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        runtime = app.state.runtime
        consumer = EventConsumer(group="metrics", handlers=HANDLERS, bus=runtime.bus, sessions=runtime.sessions)
        for record in [*downstream, received]:  # the lead's first event comes last
            await consumer.on_record(record)

        async def report(group_by: str) -> dict[str, Any]:
            response = await client.get("/v1/kpis", params={"group_by": group_by}, headers=reader)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        by_source = await report("source")
        by_team = await report("team")

    assert [group["key"] for group in by_source["groups"]] == ["webinar"]
    totals = by_source["groups"][0]["totals"]
    assert {k: totals[k] for k in ("received", "mql", "assigned", "accepted")} == {
        "received": 1,
        "mql": 1,
        "assigned": 1,
        "accepted": 1,
    }
    assert by_source["rates"]["mql_to_sal"] == 1.0
    assert {g["key"]: g["totals"]["accepted"] for g in by_team["groups"]} == {"": 0, "emea": 1}
