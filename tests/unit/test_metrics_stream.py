"""metrics' live stream (server-sent events) and the dashboard's read APIs: events applied through the real
consumer reach a connected client without it asking again, held to the caller's token."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from baton.auth import issue_token
from baton.consumer import EventConsumer
from baton.logs import JsonFormatter
from baton_metrics.app import create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.settings import MetricsSettings
from tests.e2e.test_walking_skeleton import eventually
from tests.unit.test_metrics_read_model import ANA, BEN, NOW, WEBINAR, _assigned, _at, _qualified, _received, scenario

WAIT_SECONDS = 5.0


@dataclass
class LiveMetrics:
    app: FastAPI
    url: str
    consumer: EventConsumer
    settings: MetricsSettings

    def token(self, *scopes: str, rep_id: str | None = None) -> str:
        return issue_token(self.settings.signing_secret(), scopes=list(scopes) or ["metrics:read"], rep_id=rep_id)


@asynccontextmanager
async def serve(tmp_path: Path, clock: Callable[[], datetime]) -> AsyncIterator[LiveMetrics]:
    """metrics served over real HTTP in this process (a stream never ends, so it needs a real server)."""
    settings = MetricsSettings(data_dir=tmp_path)
    app = create_app(settings, clock=clock)
    # Only a commit on this replica can wake a stream within a test's wait: the poll for other replicas is off.
    app.state.read_model_changes.poll_seconds = 3600
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return bool(server.started)

        await eventually(started, what="the server to start", within=WAIT_SECONDS)
        port = server.servers[0].sockets[0].getsockname()[1]
        runtime = app.state.runtime
        consumer = EventConsumer(
            group="metrics",
            handlers=runtime.spec.consumers["metrics"],
            bus=runtime.bus,
            sessions=runtime.sessions,
            clock=clock,
        )
        yield LiveMetrics(app=app, url=f"http://127.0.0.1:{port}", consumer=consumer, settings=settings)
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveMetrics]:
    """metrics whose clock stands still at NOW."""
    async with serve(tmp_path, lambda: NOW) as metrics:
        yield metrics


class Stream:
    """The events of one open ``/v1/stream``, read as they come."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines

    async def next(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """The next event (named ``name``, skipping others), within WAIT_SECONDS."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                event, data = "message", ""
                async for line in self._lines:
                    if not line:
                        break
                    field, _, value = line.partition(":")
                    if field == "event":
                        event = value.strip()
                    elif field == "data":
                        data += value.strip()
                if data and (name is None or event == name):
                    return event, json.loads(data)


@asynccontextmanager
async def stream(live: LiveMetrics, token: str, **params: str) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=WAIT_SECONDS) as client,
        client.stream("GET", "/v1/stream", params={"access_token": token, **params}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response.aiter_lines())


async def get(live: LiveMetrics, path: str, token: str, **params: str) -> Any:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_stream_sends_the_kpis_and_the_board_at_once_then_kpis_again_after_an_event_is_applied(
    live: LiveMetrics,
) -> None:
    reader = live.token()
    async with stream(live, reader) as events:
        assert (await events.next())[0] == "kpis"
        assert (await events.next())[0] == "sla"

        await live.consumer.on_batch([_received("l9", WEBINAR)])

        name, kpis = await events.next()
        assert name == "kpis"
        assert kpis["totals"]["received"] == 1
        today = {"from": NOW.date().isoformat(), "to": NOW.date().isoformat()}
        assert kpis == await get(live, "/v1/kpis", reader, **today)


async def test_stream_sends_the_board_when_an_assignment_is_at_risk_or_breached(live: LiveMetrics) -> None:
    async with stream(live, live.token()) as events:
        _, board = await events.next("sla")
        assert board["breached"] == []

        # Assigned 19 minutes before NOW with 5 minutes to accept: 14 minutes overdue.
        await live.consumer.on_batch(
            [
                _received("l9", WEBINAR),
                _qualified("l9", WEBINAR, _at(1)),
                _assigned("l9", "a9", ANA, WEBINAR, _at(60), accept_within=300),
            ]
        )

        _, board = await events.next("sla")
        assert [(row["assignment_id"], row["rep_id"], row["seconds_left"]) for row in board["breached"]] == [
            ("a9", "rep-ana", -840.0)
        ]
        assert board == {**await get(live, "/v1/sla/live", live.token()), "now": board["now"]}


async def test_a_rep_token_streams_only_its_own_rows(live: LiveMetrics) -> None:
    await live.consumer.on_batch(scenario())
    ana = live.token(rep_id="rep-ana")
    async with stream(live, ana, **{"from": "2024-05-01", "to": "2024-05-31"}) as events:
        _, kpis = await events.next("kpis")
        _, board = await events.next("sla")

    assert kpis == await get(live, "/v1/kpis", ana, **{"from": "2024-05-01", "to": "2024-05-31"})
    assert kpis["totals"]["assigned"] == 3  # Ana's three of the five assignments
    assert {row["rep_id"] for row in board["at_risk"] + board["breached"]} == {"rep-ana"}
    assert [rep["rep_id"] for rep in board["reps"]] == ["rep-ana"]


async def test_a_rep_token_asking_for_another_reps_stream_is_refused(live: LiveMetrics) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get(
            "/v1/stream", params={"access_token": live.token(rep_id="rep-ana"), "rep_id": BEN["rep_id"]}
        )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("params", "headers"),
    [({}, {}), ({"access_token": "not-a-token"}, {}), ({}, {"Authorization": "Bearer not-a-token"})],
    ids=["no token", "bad token in the query", "bad bearer token"],
)
async def test_stream_without_a_valid_token_answers_401(
    live: LiveMetrics, params: dict[str, str], headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get("/v1/stream", params=params, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_stream_takes_the_token_as_a_bearer_header_too_and_needs_metrics_read(live: LiveMetrics) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=WAIT_SECONDS) as client:
        wrong_scope = await client.get("/v1/stream", headers={"Authorization": f"Bearer {live.token('leads:write')}"})
        assert wrong_scope.status_code == 403
        headers = {"Authorization": f"Bearer {live.token()}"}
        async with client.stream("GET", "/v1/stream", headers=headers) as response:
            assert response.status_code == 200
            assert (await Stream(response.aiter_lines()).next())[0] == "kpis"


async def test_stream_notices_a_change_another_replica_applied(live: LiveMetrics) -> None:
    changes = live.app.state.read_model_changes
    changes.poll_seconds = 0.1
    # The plain handlers, as another replica's consumer applies them: no commit here wakes this replica's streams.
    runtime = live.app.state.runtime
    elsewhere = EventConsumer(group="metrics", handlers=HANDLERS, bus=runtime.bus, sessions=runtime.sessions)
    poll = asyncio.create_task(changes.poll_other_replicas(runtime))
    try:
        async with stream(live, live.token()) as events:
            await events.next("sla")

            async def version_read() -> bool:
                return changes.version is not None

            await eventually(version_read, what="the poll to read the version", within=WAIT_SECONDS)
            await elsewhere.on_batch([_received("l9", WEBINAR)])

            _, kpis = await events.next("kpis")
            assert kpis["totals"]["received"] == 1
    finally:
        poll.cancel()


async def test_trends_give_every_day_of_the_range_with_its_mqls_sla_compliance_and_speed_to_lead(
    live: LiveMetrics,
) -> None:
    await live.consumer.on_batch(scenario())

    trends = await get(live, "/v1/trends", live.token(), **{"from": "2024-04-30", "to": "2024-05-02"})

    assert (trends["from"], trends["to"]) == ("2024-04-30", "2024-05-02")
    days = {day["day"]: day for day in trends["days"]}
    assert list(days) == ["2024-04-30", "2024-05-01", "2024-05-02"]
    assert days["2024-04-30"] == {
        "day": "2024-04-30",
        "received": 0,
        "mql": 0,
        "assigned": 0,
        "sla_compliance": None,
        "speed_to_lead_p50_minutes": None,
    }
    may_first = days["2024-05-01"]
    assert (may_first["received"], may_first["mql"], may_first["assigned"]) == (4, 4, 5)
    assert may_first["sla_compliance"] == 0.6667  # as GET /v1/kpis: 2 met of 3 decided
    assert may_first["speed_to_lead_p50_minutes"] == pytest.approx(1795 / 60, rel=0.011)


async def test_trends_default_to_the_last_14_days_and_hold_a_rep_to_its_own_rows(live: LiveMetrics) -> None:
    await live.consumer.on_batch(scenario())

    trends = await get(live, "/v1/trends", live.token(rep_id="rep-ben"))

    assert (trends["from"], trends["to"]) == ("2024-04-18", "2024-05-01")
    assert len(trends["days"]) == 14
    assert trends["days"][-1]["assigned"] == 2  # Ben's two
    assert trends["days"][-1]["sla_compliance"] == 0.0


async def test_trends_refuse_a_range_that_ends_before_it_starts(live: LiveMetrics) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get(
            "/v1/trends",
            params={"from": "2024-05-02", "to": "2024-05-01"},
            headers={"Authorization": f"Bearer {live.token()}"},
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_dashboard_is_served_from_the_package_with_its_script_and_stylesheet(live: LiveMetrics) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        page = await client.get("/dashboard")
        script = await client.get("/dashboard/dashboard.js")
        style = await client.get("/dashboard/dashboard.css")
        missing = await client.get("/dashboard/other.js")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/dashboard/dashboard.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "EventSource" in script.text
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404


async def test_stream_sends_the_board_when_time_alone_puts_an_assignment_at_risk(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    async with serve(tmp_path, lambda: NOW + (datetime.now(UTC) - started)) as live:
        # At risk once 80% of the 12.5 s to the deadline have gone: 2 s from now.
        now = live.app.state.runtime.clock()
        assigned_at = now - timedelta(seconds=8)
        await live.consumer.on_batch([_assigned("l9", "a9", ANA, WEBINAR, assigned_at, accept_within=12.5)])
        async with stream(live, live.token()) as events:
            _, board = await events.next("sla")
            assert (board["open_assignments"], board["at_risk"]) == (1, [])

            # No event arrives: the stream wakes when the moment comes.
            _, board = await events.next("sla")
            assert [(row["assignment_id"], row["state"]) for row in board["at_risk"]] == [("a9", "at_risk")]


async def test_the_token_in_the_streams_url_never_reaches_the_logs(
    live: LiveMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    token, ana = live.token(), live.token(rep_id="rep-ana")
    async with stream(live, token) as events:
        await events.next("sla")
    async with httpx.AsyncClient(base_url=live.url) as client:
        refused = await client.get("/v1/stream", params={"access_token": ana, "rep_id": "rep-ben"})
    assert refused.status_code == 403

    # Every record as the service writes it: through the JSON formatter its log handler uses.
    formatter = next(h.formatter for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter))
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "GET /v1/stream?access_token=*** HTTP/1.1" in logged  # uvicorn's access log
    assert "GET /v1/stream?access_token=***&rep_id=rep-ben HTTP/1.1" in logged
    assert token not in logged and ana not in logged
