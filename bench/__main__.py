"""Measures Baton on this machine, on both transports, next to the limits of its raw parts.

    python -m bench [--transport embedded|kafka|both] [--quick] [--json PATH] [--markdown PATH]

``make bench`` runs it in full and writes ``bench/results.json`` and ``bench/results.md``. Kafka and
PostgreSQL must be running (``make infra``) for the Kafka transport, and ``wrk`` must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from tests.conftest import KAFKA_BOOTSTRAP, POSTGRES_URL, SERVICE_DATABASES
from tests.system import RunningSystem, embedded_system, kafka_system

from baton.cli import SERVICES
from bench import limits as raw
from bench.alone import measure_metrics, measure_scoring
from bench.dashboard import event_to_tile
from bench.intake import intake_figures
from bench.machine import machine_info
from bench.memory import RssSampler, service_pids_under
from bench.pipeline import (
    BATCH_PATH,
    AssignmentWatcher,
    Baton,
    EmbeddedAssignments,
    KafkaAssignments,
    event_to_kpi,
    latency_under_load,
    settle,
    sustained_rate,
    wait_until_counted,
)
from bench.report import build_results, dumps, render_markdown
from bench.routing import measure_routing
from bench.webhooks import WEBHOOK_PATH, signed_intake
from bench.wrk import run_wrk, wrk_available

BARE_PORT = 18300
BASE_PORTS = {"embedded": 18301, "kafka": 18401}


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs."""

    wrk_seconds: float
    raw_seconds: float
    kafka_messages: int
    pings: int
    batch_size: int
    post_seconds: float
    backlog_seconds: float
    min_backlog: int
    drain_timeout: float
    latency_seconds: float
    settle_timeout: float
    kpi_leads: int
    intake_drain_timeout: float
    routing_leads: int
    routing_seconds: float
    routing_timeout: float
    scoring_leads: int
    metrics_leads: int
    alone_timeout: float
    tile_leads: int


FULL = Plan(
    wrk_seconds=10,
    raw_seconds=5,
    kafka_messages=20_000,
    pings=100,
    batch_size=100,
    post_seconds=20,
    backlog_seconds=3,
    min_backlog=200,
    drain_timeout=90,
    latency_seconds=15,
    settle_timeout=30,
    kpi_leads=10,
    intake_drain_timeout=30,
    routing_leads=3_000,
    routing_seconds=10,
    routing_timeout=30,
    scoring_leads=3_000,
    metrics_leads=3_000,
    alone_timeout=60,
    tile_leads=10,
)
QUICK = Plan(
    wrk_seconds=2,
    raw_seconds=1,
    kafka_messages=2_000,
    pings=20,
    batch_size=100,
    post_seconds=3,
    backlog_seconds=2,
    min_backlog=100,
    drain_timeout=30,
    latency_seconds=3,
    settle_timeout=10,
    kpi_leads=3,
    intake_drain_timeout=5,
    routing_leads=300,
    routing_seconds=2,
    routing_timeout=10,
    scoring_leads=300,
    metrics_leads=300,
    alone_timeout=20,
    tile_leads=3,
)


def say(message: str) -> None:
    """Progress, on stderr so that stdout carries only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _guarded(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return measure()
    except Exception as exc:
        say(f"{what} failed: {exc!r}")
        traceback.print_exc(file=sys.stderr)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"error": f"{what}: {first_line[:300]}"}


def measure_limits(transports: list[str], plan: Plan) -> dict[str, dict[str, Any]]:
    """The raw limits each transport is compared with, measured while no system runs."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as workdir:
        say(f"limit: bare FastAPI 202 endpoint, wrk {plan.wrk_seconds:g} s single and batch")
        fastapi = _guarded(
            "bare FastAPI",
            lambda: raw.fastapi_limit(
                port=BARE_PORT, seconds=plan.wrk_seconds, batch_size=plan.batch_size, workdir=Path(workdir)
            ),
        )
    found: dict[str, dict[str, Any]] = {}
    if "embedded" in transports:
        say(f"limit: raw SQLite fsynced commits and appends, {plan.raw_seconds:g} s each")
        found["embedded"] = {
            "fastapi": fastapi,
            "bus": _guarded("raw SQLite appends", lambda: raw.sqlite_append_limit(seconds=plan.raw_seconds)),
            "commits": _guarded("raw SQLite commits", lambda: raw.sqlite_limit(seconds=plan.raw_seconds)),
        }
    if "kafka" in transports:
        say(f"limit: raw aiokafka, {plan.kafka_messages} messages produced and consumed")
        bus = _guarded(
            "raw aiokafka",
            lambda: asyncio.run(
                raw.kafka_limit(bootstrap=KAFKA_BOOTSTRAP, messages=plan.kafka_messages, pings=plan.pings)
            ),
        )
        say(f"limit: raw asyncpg single-row commits, 16 connections for {plan.raw_seconds:g} s")
        commits = _guarded(
            "raw asyncpg",
            lambda: asyncio.run(raw.postgres_limit(seconds=plan.raw_seconds, connections=16, pings=plan.pings)),
        )
        found["kafka"] = {"fastapi": fastapi, "bus": bus, "commits": commits}
    return found


def _bearer(system: RunningSystem) -> str:
    return system.token("admin")["Authorization"].removeprefix("Bearer ")


async def _attempt(transport: str, what: str, measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """What ``measure`` found, or ``{"error": ...}`` when it failed (said on stderr with its traceback), so that one
    phase's failure is reported in its own row and the others still run."""
    try:
        return await measure()
    except Exception as exc:
        say(f"[{transport}] {what} failed: {exc!r}")
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


async def _measure_system(
    system: RunningSystem, watcher: AssignmentWatcher, plan: Plan, transport: str, ceiling_per_second: float | None
) -> dict[str, Any]:
    measured: dict[str, Any] = {}
    token = _bearer(system)
    headers = {"Authorization": f"Bearer {token}"}
    tag = secrets.token_hex(3)
    # Open-loop load must never queue in the client: allow far more connections than leads in flight.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        baton = Baton(client, system.urls, headers)
        await baton.create_reps()
        batch, why_not = await baton.batch_available(tag)
        if not batch:
            say(f"[{transport}] {BATCH_PATH}: {why_not}")
        async with watcher:
            await settle(baton, wait_seconds=plan.settle_timeout)
            how = f"batches of {plan.batch_size}" if batch else "32 concurrent single posts"
            say(f"[{transport}] sustained rate: posting hand-raisers for {plan.post_seconds:g} s ({how})")
            sustained = await sustained_rate(
                baton,
                tag=tag + "e",
                post_seconds=plan.post_seconds,
                backlog_seconds=plan.backlog_seconds,
                min_backlog=plan.min_backlog,
                drain_timeout=plan.drain_timeout,
                batch=batch,
                batch_size=plan.batch_size,
                concurrency=4 if batch else 32,
            )
            measured["sustained"] = sustained
            rate = sustained.get("leads_per_second") or 0.0
            say(f"[{transport}] sustained: {rate:.1f} leads/s over {sustained['leads']} leads")
            for key, share in (("latency_50", 0.5), ("latency_80", 0.8)):
                if rate <= 0:
                    break
                await settle(baton, wait_seconds=plan.settle_timeout)
                say(f"[{transport}] POST → assigned at {share:.0%}: {rate * share:.1f} leads/s open loop")
                measured[key] = await latency_under_load(
                    baton,
                    watcher,
                    tag=f"{tag}l{int(share * 100)}",
                    rate=rate * share,
                    seconds=plan.latency_seconds,
                    settle_timeout=plan.settle_timeout,
                )
            say(f"[{transport}] event → KPI over {plan.kpi_leads} leads")
            measured["event_to_kpi"] = await event_to_kpi(baton, watcher, tag=tag + "k", leads=plan.kpi_leads)
            await settle(baton, wait_seconds=plan.settle_timeout)
            say(f"[{transport}] handoff alone: {plan.routing_leads} MQLs onto leads.scored, then half that rate")
            routing = await _attempt(
                transport,
                "handoff alone",
                partial(
                    measure_routing,
                    baton,
                    watcher,
                    system.env,
                    tag=tag,
                    leads=plan.routing_leads,
                    latency_seconds=plan.routing_seconds,
                    wait_seconds=plan.routing_timeout,
                ),
            )
            if "error" in routing:
                routing = {"routed": routing}
            measured.update(routing)
            routed = routing["routed"].get("leads_per_second") or 0.0
            say(f"[{transport}] handoff alone: {routed:.1f} routed leads/s")
        await _measure_alone(baton, system, plan, transport, tag=tag, token=token, measured=measured)
        intake_url = f"{system.urls['lead-ingest']}/v1/leads"
        await settle(baton, wait_seconds=plan.settle_timeout)
        before = (await baton.totals()).get("received", 0)
        say(f"[{transport}] intake: wrk POST /v1/leads for {plan.wrk_seconds:g} s")
        single = await asyncio.to_thread(run_wrk, intake_url, token=token, tag=tag + "s", seconds=plan.wrk_seconds)
        measured["intake_single"] = intake_figures(single)
        # Each intake phase starts once metrics counted the leads of the one before, on a quiet pipeline.
        taken = before + single.ok
        caught_up = await wait_until_counted(baton, taken, wait_seconds=plan.intake_drain_timeout)
        measured["intake_single"]["pipeline_caught_up_before_webhook"] = caught_up
        say(f"[{transport}] intake: wrk {WEBHOOK_PATH}, signed deliveries for {plan.wrk_seconds:g} s")
        webhook = await _attempt(
            transport,
            "signed webhook intake",
            partial(
                signed_intake, baton, tag=tag + "w", seconds=plan.wrk_seconds, ceiling_per_second=ceiling_per_second
            ),
        )
        if "error" in webhook:
            webhook = {"available": False, **webhook}
        measured["intake_webhook"] = webhook
        taken += webhook.get("ok") or 0
        if batch:
            caught_up = await wait_until_counted(baton, taken, wait_seconds=plan.intake_drain_timeout)
            webhook["pipeline_caught_up_before_batch"] = caught_up
            say(f"[{transport}] intake: wrk {BATCH_PATH}, {plan.batch_size} leads per request")
            result = await asyncio.to_thread(
                run_wrk,
                f"{system.urls['lead-ingest']}{BATCH_PATH}",
                token=token,
                tag=tag + "b",
                batch=plan.batch_size,
                connections=8,
                seconds=plan.wrk_seconds,
            )
            measured["intake_batch"] = intake_figures(result, batch_size=plan.batch_size)
        else:
            measured["intake_batch"] = {"available": False, "leads_per_second": None, "note": why_not}
    return measured


async def _measure_alone(
    baton: Baton, system: RunningSystem, plan: Plan, transport: str, *, tag: str, token: str, measured: dict[str, Any]
) -> None:
    """scoring alone, metrics alone and event → dashboard tile, each on a settled system; a failure is reported
    in its own row."""

    async def guarded(key: str, what: str, measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        await settle(baton, wait_seconds=plan.settle_timeout)
        say(f"[{transport}] {what}")
        measured[key] = await _attempt(transport, what, measure)
        return measured[key]

    scored = await guarded(
        "scored",
        f"scoring alone: {plan.scoring_leads} lead.received onto leads.ingested",
        lambda: measure_scoring(
            baton, system.env, tag=tag + "n", leads=plan.scoring_leads, wait_seconds=plan.alone_timeout
        ),
    )
    say(f"[{transport}] scoring alone: {scored.get('leads_per_second') or 0.0:.1f} scored leads/s")
    applied = await guarded(
        "metrics_applied",
        f"metrics alone: {plan.metrics_leads} leads' received, qualified, assigned, accepted onto the three topics",
        lambda: measure_metrics(
            baton, system.env, tag=tag + "m", leads=plan.metrics_leads, wait_seconds=plan.alone_timeout
        ),
    )
    say(f"[{transport}] metrics alone: {applied.get('events_per_second') or 0.0:.1f} events applied/s")
    tile = await guarded(
        "event_to_tile",
        f"event → dashboard tile over {plan.tile_leads} leads",
        lambda: event_to_tile(baton, token, tag=tag + "t", leads=plan.tile_leads),
    )
    say(f"[{transport}] event → dashboard tile: p50 {tile.get('p50_ms') or 0.0:.1f} ms")


async def _drop_kafka_system(name: str) -> None:
    conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    try:
        for database in SERVICE_DATABASES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}_{database}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(f"{name}.")]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


@contextlib.contextmanager
def _system(transport: str, workdir: Path) -> Iterator[tuple[RunningSystem, dict[str, int], AssignmentWatcher]]:
    port = BASE_PORTS[transport]
    if transport == "embedded":
        with embedded_system(workdir, base_port=port) as system:
            pids = service_pids_under(system.processes[0].pid)
            yield system, pids, EmbeddedAssignments(workdir / "data" / "bus.db")
        return
    if "BATON_KAFKA_REPLICATION_FACTOR" not in os.environ:
        # A single-broker development cluster cannot hold Baton's default three replicas.
        os.environ["BATON_KAFKA_REPLICATION_FACTOR"] = str(asyncio.run(raw.kafka_replication(KAFKA_BOOTSTRAP)))
    name = f"bench{secrets.token_hex(4)}"
    context: AbstractContextManager[RunningSystem] = kafka_system(workdir, name, base_port=port)
    try:
        with context as system:
            pids = {s.name: p.pid for s, p in zip(SERVICES, system.processes, strict=True)}
            prefix = system.env["BATON_KAFKA_TOPIC_PREFIX"]
            yield system, pids, KafkaAssignments(bootstrap=KAFKA_BOOTSTRAP, prefix=prefix, group="bench-observer")
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_drop_kafka_system(name))


def measure_transport(transport: str, plan: Plan, ceiling_per_second: float | None = None) -> dict[str, Any]:
    """Starts the system on one transport, measures it, stops it; ``ceiling_per_second`` is the bare endpoint's rate."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        say(f"[{transport}] starting the system")
        started = time.perf_counter()
        with _system(transport, Path(tmp)) as (system, pids, watcher):
            startup = time.perf_counter() - started
            say(f"[{transport}] up in {startup:.1f} s")
            with RssSampler(pids) as rss:
                measured = asyncio.run(_measure_system(system, watcher, plan, transport, ceiling_per_second))
            measured["startup_seconds"] = startup
            measured["rss_mb"] = {name: round(value, 1) for name, value in rss.peak_mb.items()}
            say(f"[{transport}] stopping")
    return measured


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the markdown report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("embedded", "kafka", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="tiny counts and a few seconds per phase (smoke check)")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[bench] %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # metadata races on freshly created topics
    if not wrk_available():
        print("python -m bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    transports = ["embedded", "kafka"] if args.transport == "both" else [args.transport]
    started = time.perf_counter()
    machine = machine_info(kafka="kafka" in transports)
    limits = measure_limits(transports, plan)
    machine["postgresql"] = limits.get("kafka", {}).get("commits", {}).get("server_version")
    measured: dict[str, dict[str, Any]] = {}
    for transport in transports:
        ceiling = limits.get(transport, {}).get("fastapi", {}).get("single_rps")
        measured[transport] = _guarded(f"{transport} system", partial(measure_transport, transport, plan, ceiling))
    results = build_results(
        machine=machine,
        limits=limits,
        measured=measured,
        mode="quick" if args.quick else "full",
        duration_seconds=time.perf_counter() - started,
    )
    markdown = render_markdown(results)
    if args.json is not None:
        args.json.write_text(dumps(results))
    if args.markdown is not None:
        args.markdown.write_text(markdown)
    print(markdown)
    failed = [t for t, m in measured.items() if "error" in m]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
