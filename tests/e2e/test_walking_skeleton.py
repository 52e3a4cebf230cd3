"""One scenario, two transports: 200 leads in, every MQL assigned exactly once, KPIs add up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from baton.cli import SERVICES
from tests.system import RunningSystem

pytestmark = pytest.mark.e2e

REPS = ("rep-a", "rep-b", "rep-c", "rep-d")
LEADS = 200
DEADLINE_SECONDS = 90


def lead_for(i: int, run: str) -> tuple[dict[str, Any], bool]:
    """The i-th sample lead and whether the default model makes it an MQL.

    A quarter ask for a demo (hand-raisers), a quarter are executives at large companies (over the
    threshold), the rest are individual contributors at small companies or on free mail (nurture).
    """
    lead: dict[str, Any] = {"email": f"person{i}.{run}@company{i % 7}.example", "source": ("web", "ads")[i % 2]}
    kind = i % 4
    if kind == 0:
        lead |= {"title": "Engineer", "company_size": 10, "activities": [{"type": "demo_request"}]}
    elif kind == 1:
        lead |= {"title": "Chief Executive Officer", "company_size": 2500, "campaign": "launch"}
    elif kind == 2:
        lead |= {"title": "Engineer", "company_size": 10}
    else:
        lead |= {"title": "Analyst", "email": f"person{i}.{run}@gmail.com"}
    return lead, kind in (0, 1)


async def eventually(check: Any, *, what: str, within: float = DEADLINE_SECONDS) -> Any:
    """Polls an async check until it returns something truthy."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


async def all_assignments(client: httpx.AsyncClient, system: RunningSystem, **headers: str) -> list[dict[str, Any]]:
    """Every assignment visible to a token, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "30", **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{system.urls['handoff']}/v1/assignments", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def run_scenario(system: RunningSystem, run: str) -> None:
    admin = system.token("admin")
    async with httpx.AsyncClient(timeout=30) as client:
        for rep_id in REPS:
            response = await client.post(
                f"{system.urls['handoff']}/v1/reps",
                json={"rep_id": rep_id, "name": rep_id.title(), "team": "core", "capacity": 1000},
                headers=admin,
            )
            assert response.status_code == 201, response.text

        writer = system.token("leads:write")
        gate = asyncio.Semaphore(16)

        async def post(i: int) -> tuple[str, bool]:
            lead, qualifies = lead_for(i, run)
            async with gate:
                response = await client.post(f"{system.urls['lead-ingest']}/v1/leads", json=lead, headers=writer)
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["status"] == "received" and body["duplicate"] is False
            return body["lead_id"], qualifies

        posted = await asyncio.gather(*(post(i) for i in range(LEADS)))
        expected_mqls = {lead_id for lead_id, qualifies in posted if qualifies}
        assert len(expected_mqls) == LEADS // 2

        async def assignments_complete() -> list[dict[str, Any]] | None:
            items = await all_assignments(client, system, **admin)
            return items if len(items) >= len(expected_mqls) else None

        assignments = await eventually(assignments_complete, what="every MQL to be assigned")
        assigned_leads = Counter(a["lead_id"] for a in assignments)
        assert set(assigned_leads) == expected_mqls
        assert max(assigned_leads.values()) == 1, "a lead was assigned twice"
        per_rep = Counter(a["rep_id"] for a in assignments)
        assert sorted(per_rep.values()) == [len(expected_mqls) // len(REPS)] * len(REPS), per_rep

        pulled: dict[str, list[dict[str, Any]]] = {}
        for rep_id in REPS:
            pulled[rep_id] = await all_assignments(client, system, **system.token("assignments:read", rep_id=rep_id))
            assert {a["rep_id"] for a in pulled[rep_id]} == {rep_id}
        assert sum(len(items) for items in pulled.values()) == len(expected_mqls)

        first = pulled["rep-a"][0]
        rep_a = system.token("assignments:read", "assignments:write", rep_id="rep-a")
        accepted = await client.post(
            f"{system.urls['handoff']}/v1/assignments/{first['assignment_id']}/events",
            json={"type": "accepted"},
            headers=rep_a,
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
        again = await client.post(
            f"{system.urls['handoff']}/v1/assignments/{first['assignment_id']}/events",
            json={"type": "accepted"},
            headers=rep_a,
        )
        assert again.status_code == 409
        other_rep = pulled["rep-b"][0]["assignment_id"]
        forbidden = await client.post(
            f"{system.urls['handoff']}/v1/assignments/{other_rep}/events", json={"type": "accepted"}, headers=rep_a
        )
        assert forbidden.status_code == 404

        reader = system.token("metrics:read")
        expected = {"received": LEADS, "mql": len(expected_mqls), "assigned": len(expected_mqls), "accepted": 1}

        async def kpis_add_up() -> dict[str, Any] | None:
            response = await client.get(f"{system.urls['metrics']}/v1/kpis", headers=reader)
            assert response.status_code == 200, response.text
            totals = response.json()["totals"]
            return totals if {k: totals[k] for k in expected} == expected else None

        totals = await eventually(kpis_add_up, what=f"KPI totals {expected}")
        assert totals["rejected"] == 0 and totals["won"] == 0

        by_source = await client.get(f"{system.urls['metrics']}/v1/kpis", params={"group_by": "source"}, headers=reader)
        groups = {g["key"]: g["totals"]["received"] for g in by_source.json()["groups"]}
        assert groups == {"web": LEADS // 2, "ads": LEADS // 2}


async def test_leads_flow_through_all_four_services_on_the_embedded_default(
    embedded_system: RunningSystem, unique_name: str
) -> None:
    await run_scenario(embedded_system, unique_name)


@pytest.mark.integration
async def test_leads_flow_through_all_four_services_on_kafka_and_postgresql(
    kafka_system: RunningSystem, unique_name: str
) -> None:
    await run_scenario(kafka_system, unique_name)


def test_a_second_replica_on_the_embedded_log_refuses_and_says_to_switch_to_kafka(
    embedded_system: RunningSystem,
) -> None:
    for service in SERVICES:
        second = subprocess.run(
            [sys.executable, "-m", "uvicorn", "--factory", service.factory, "--port", "18090"],
            env=embedded_system.env,
            capture_output=True,
            timeout=60,
        )
        assert second.returncode != 0, service.name
        assert b"BATON_BUS=kafka" in second.stderr, second.stderr.decode()[-2000:]
        assert httpx.get(f"{embedded_system.urls[service.name]}/readyz").status_code == 200
