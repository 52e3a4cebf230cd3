"""handoff's Prometheus metrics as GET /metrics serves them: counters of what committed, gauges from the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db import after_commit
from baton.events import new_id
from baton_handoff import observability
from baton_handoff.models import Assignment, RepWorkload
from baton_handoff.observability import breached, routed, update_gauges
from baton_handoff.settings import HandoffSettings
from tests.conftest import LogSignal
from tests.unit.test_handoff_api import Handoff, running_handoff

NOW = datetime(2030, 6, 3, 9, 0, tzinfo=UTC)
ANA = {"rep_id": "rep-ana", "name": "Ana", "team": "emea", "capacity": 20}
BEN = {"rep_id": "rep-ben", "name": "Ben", "team": "amer", "capacity": 20}
CY = {"rep_id": "rep-cy", "name": "Cy", "capacity": 20}


async def _no_refresh(session: AsyncSession, *, now: datetime) -> None:
    """Stands in for the gauge worker's refresh, so that only a test's own refreshes set the gauges."""


@pytest.fixture
async def handoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Handoff]:
    monkeypatch.setattr(observability, "update_gauges", _no_refresh)
    async with running_handoff(HandoffSettings(data_dir=tmp_path)) as service:
        yield service


async def samples(handoff: Handoff, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family /metrics serves, by their sorted labels."""
    answer = await handoff.client.get("/metrics")
    assert answer.status_code == 200
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == metric:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def sample(handoff: Handoff, metric: str, **labels: str) -> float:
    return (await samples(handoff, metric)).get(tuple(sorted(labels.items())), 0.0)


# counters and after_commit


async def test_a_routed_lead_is_counted_by_rule_and_method_and_its_routing_time_observed(handoff: Handoff) -> None:
    before = await sample(handoff, "baton_handoff_assignments_total", rule="emea-enterprise", method="weighted")
    observed = await sample(handoff, "baton_handoff_routing_seconds_count")

    routed(rule="emea-enterprise", method="weighted", seconds=0.002)
    routed(rule="emea-enterprise", method="weighted", seconds=0.004)

    assert await sample(handoff, "baton_handoff_assignments_total", rule="emea-enterprise", method="weighted") == (
        before + 2
    )
    assert await sample(handoff, "baton_handoff_routing_seconds_count") == observed + 2


async def test_a_breach_is_counted_by_sla_and_action(handoff: Handoff) -> None:
    before = await sample(handoff, "baton_handoff_sla_breaches_total", sla="accept", action="escalated")

    breached(sla="accept", action="escalated")

    assert await sample(handoff, "baton_handoff_sla_breaches_total", sla="accept", action="escalated") == before + 1
    assert await sample(handoff, "baton_handoff_sla_breaches_total", sla="touch", action="escalated") == 0


async def test_after_commit_runs_once_when_the_transaction_commits(handoff: Handoff) -> None:
    ran: list[str] = []
    async with handoff.runtime.sessions() as session:
        async with session.begin():
            after_commit(session, lambda: ran.append("first"))
            after_commit(session, lambda: ran.append("second"))
            assert ran == []
        async with session.begin():
            pass

    assert ran == ["first", "second"]


async def test_after_commit_never_runs_for_a_rolled_back_transaction_even_when_the_session_commits_later(
    handoff: Handoff,
) -> None:
    ran: list[str] = []
    async with handoff.runtime.sessions() as session:
        with pytest.raises(RuntimeError):
            async with session.begin():
                await session.execute(RepWorkload.__table__.select())
                after_commit(session, lambda: ran.append("rolled back"))
                raise RuntimeError("the batch failed")
        async with session.begin():
            after_commit(session, lambda: ran.append("retried"))

    assert ran == ["retried"]


async def test_a_failing_after_commit_callback_does_not_stop_the_others(
    handoff: Handoff, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def fails() -> None:
        raise ValueError("broken callback")

    async with handoff.runtime.sessions() as session, session.begin():
        after_commit(session, fails)
        after_commit(session, lambda: ran.append("counted"))

    assert ran == ["counted"]
    assert any(r.exc_info and "broken callback" in str(r.exc_info[1]) for r in caplog.records)


# gauges


async def add_assignment(handoff: Handoff, **fields: Any) -> None:
    async with handoff.runtime.sessions() as session, session.begin():
        session.add(
            Assignment(
                **{
                    "id": new_id(),
                    "lead_id": new_id(),
                    "rule": "default",
                    "lead": {},
                    "decision": {},
                    "created_at": NOW - timedelta(hours=1),
                    "updated_at": NOW - timedelta(hours=1),
                    **fields,
                }
            )
        )


async def set_workload(handoff: Handoff, rep_id: str, open_assignments: int) -> None:
    async with handoff.runtime.sessions() as session, session.begin():
        workload = await session.get(RepWorkload, rep_id)
        if workload is None:
            session.add(RepWorkload(rep_id=rep_id, open_assignments=open_assignments))
        else:
            workload.open_assignments = open_assignments


async def refresh(handoff: Handoff, now: datetime = NOW) -> None:
    async with handoff.runtime.sessions() as session:
        await update_gauges(session, now=now)


async def test_open_assignments_are_shown_per_rep_and_a_deleted_rep_leaves_the_gauge(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)
    await set_workload(handoff, "rep-ana", 3)
    await set_workload(handoff, "rep-ben", 0)
    await refresh(handoff)
    shown = await samples(handoff, "baton_handoff_open_assignments")

    await set_workload(handoff, "rep-ana", 0)
    deleted = await handoff.client.delete("/v1/reps/rep-ana", headers=handoff.admin)
    assert deleted.status_code == 204, deleted.text
    await refresh(handoff)
    after = await samples(handoff, "baton_handoff_open_assignments")

    assert shown == {(("rep_id", "rep-ana"),): 3, (("rep_id", "rep-ben"),): 0}
    assert after == {(("rep_id", "rep-ben"),): 0}


async def test_queue_depth_counts_queued_leads_per_team_and_shows_zero_for_teams_with_none(handoff: Handoff) -> None:
    # Away, so that the queue stays as it is rather than drained to them.
    await handoff.add_reps(*({**rep, "status": "away"} for rep in (ANA, BEN, CY)))
    for _ in range(2):
        await add_assignment(handoff, rep_id=None, team="emea", status="queued")
    await add_assignment(handoff, rep_id=None, team=None, status="queued")
    await add_assignment(handoff, rep_id=None, team="apac", status="queued")
    await add_assignment(handoff, rep_id="rep-ben", team="amer", status="assigned")

    await refresh(handoff)

    assert await samples(handoff, "baton_handoff_queue_depth") == {
        (("team", "emea"),): 2,
        (("team", "amer"),): 0,
        (("team", "apac"),): 1,
        (("team", ""),): 1,
    }


async def test_at_risk_counts_open_assignments_whose_running_clock_passed_its_at_risk_instant(
    handoff: Handoff,
) -> None:
    await handoff.add_reps(ANA, BEN)
    past, future = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)
    at_risk = [
        {"status": "assigned", "accept_at_risk_at": past, "touch_at_risk_at": future},
        {"status": "assigned", "accept_at_risk_at": past, "touch_at_risk_at": past},
        {"status": "accepted", "accept_at_risk_at": past - timedelta(hours=1), "touch_at_risk_at": NOW},
    ]
    safe = [
        {"status": "assigned", "accept_at_risk_at": future, "touch_at_risk_at": future},
        # The accept clock stopped when the rep accepted; the touch clock stopped at the first contact.
        {"status": "accepted", "accept_at_risk_at": past, "touch_at_risk_at": future},
        {"status": "contacted", "accept_at_risk_at": past, "touch_at_risk_at": past},
        {"status": "reassigned", "accept_at_risk_at": past, "touch_at_risk_at": past},
    ]
    for clocks in at_risk + safe:
        await add_assignment(handoff, rep_id="rep-ana", team="emea", **clocks)
    await add_assignment(handoff, rep_id="rep-ben", team="amer", status="assigned", accept_at_risk_at=future)

    await refresh(handoff)
    now_shown = await samples(handoff, "baton_handoff_sla_at_risk")
    await refresh(handoff, now=NOW + timedelta(minutes=2))
    later = await samples(handoff, "baton_handoff_sla_at_risk")

    assert now_shown == {(("team", "emea"),): 3, (("team", "amer"),): 0}
    assert later == {(("team", "emea"),): 5, (("team", "amer"),): 1}


async def test_the_gauge_worker_keeps_the_gauges_current_while_handoff_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshes: asyncio.Queue[None] = asyncio.Queue()

    async def update_and_tell(session: AsyncSession, *, now: datetime) -> None:
        await update_gauges(session, now=now)
        refreshes.put_nowait(None)

    monkeypatch.setattr(observability, "GAUGES_REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(observability, "update_gauges", update_and_tell)
    async with running_handoff(HandoffSettings(data_dir=tmp_path)) as handoff:
        await handoff.add_reps(ANA)
        await set_workload(handoff, "rep-ana", 4)
        while not refreshes.empty():
            refreshes.get_nowait()
        # The first refresh to finish may have read the database before the change; the second began after it.
        async with asyncio.timeout(10):
            for _ in range(2):
                await refreshes.get()

        assert await sample(handoff, "baton_handoff_open_assignments", rep_id="rep-ana") == 4


async def test_the_gauge_worker_outlasts_a_database_that_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshes: asyncio.Queue[None] = asyncio.Queue()
    failures = iter([ConnectionRefusedError("the database is down")])

    async def fail_once_then_update(session: AsyncSession, *, now: datetime) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        await update_gauges(session, now=now)
        refreshes.put_nowait(None)

    monkeypatch.setattr(observability, "GAUGES_REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(observability, "update_gauges", fail_once_then_update)
    with (
        LogSignal("baton_handoff.observability", "refreshing the gauges failed; trying again") as failed,
        LogSignal("baton.runtime", "worker stopped; restarting") as restarted,
    ):
        async with running_handoff(HandoffSettings(data_dir=tmp_path)) as handoff:
            await handoff.add_reps(ANA)
            await set_workload(handoff, "rep-ana", 2)
            while not refreshes.empty():
                refreshes.get_nowait()
            async with asyncio.timeout(10):
                await failed.seen.wait()
                for _ in range(2):
                    await refreshes.get()

            assert await sample(handoff, "baton_handoff_open_assignments", rep_id="rep-ana") == 2
    assert not restarted.seen.is_set()
