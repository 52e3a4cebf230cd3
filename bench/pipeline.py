"""Baton end to end: the sustained rate, POST → assigned latency under open-loop load, event → KPI delay."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from baton.events import LEADS_HANDOFF, LeadAssigned, from_binary
from bench.report import percentile

logger = logging.getLogger(__name__)

ASSIGNED = LeadAssigned.event_type
BATCH_PATH = "/v1/leads:batch"
REP_CAPACITY = 100_000  # the most a rep may take; four reps cover any run

_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie")
_TITLES = ("VP Marketing", "Head of Growth", "Director of Sales", "CTO", "Marketing Manager")
_COUNTRIES = ("US", "DE", "GB", "FR", "CA", "NL")


def hand_raiser(tag: str, n: int) -> dict[str, Any]:
    """A realistic lead that asked for a demo, so the default scoring model makes it an MQL at once."""
    first, last = _FIRST[n % len(_FIRST)], _LAST[(n * 7 + 3) % len(_LAST)]
    return {
        "email": f"{first.lower()}.{last.lower()}.{tag}.{n}@example.com",
        "first_name": first,
        "last_name": last,
        "company": f"{last} Labs",
        "title": _TITLES[n % len(_TITLES)],
        "country": _COUNTRIES[n % len(_COUNTRIES)],
        "company_size": (12, 80, 250, 1200)[n % 4],
        "source": "website",
        "campaign": "spring-launch",
        "activities": [{"type": "demo_request"}],
    }


@dataclass
class Seen:
    """When the observer saw a lead's assignment, and the event's own time."""

    at: float
    event_time: float


class AssignmentWatcher:
    """Watches ``leads.handoff`` for ``lead.assigned`` events (or another topic for another type) from now on,
    in the background."""

    def __init__(self, *, topic: str = LEADS_HANDOFF, event_type: str = ASSIGNED) -> None:
        self.topic = topic
        self.event_type = event_type
        self.seen: dict[str, Seen] = {}
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def _prepare(self) -> None:
        raise NotImplementedError

    async def _read(self) -> list[tuple[Sequence[tuple[str, bytes]], bytes]]:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            messages = await self._read()
            now = time.perf_counter()
            for headers, value in messages:
                try:
                    event = from_binary(tuple(headers), value)
                except ValueError:
                    continue
                if event.type == self.event_type and event.subject not in self.seen:
                    self.seen[event.subject] = Seen(at=now, event_time=event.time.timestamp())
            if messages:
                self._arrived.set()

    async def wait_for(self, lead_ids: Sequence[str], wait_seconds: float) -> bool:
        """Waits until every lead's assignment was seen.

        Args:
            lead_ids: The leads.
            wait_seconds: Seconds to wait at most.

        Returns:
            Whether all were seen in time.
        """
        deadline = time.perf_counter() + wait_seconds
        while any(lead_id not in self.seen for lead_id in lead_ids):
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self._arrived.wait()
        return True

    async def __aenter__(self) -> AssignmentWatcher:
        await self._prepare()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close()


class KafkaAssignments(AssignmentWatcher):
    """Reads the system's ``leads.handoff`` topic (or ``topic``) with a consumer group of its own, from the end."""

    def __init__(
        self, *, bootstrap: str, prefix: str, group: str, topic: str = LEADS_HANDOFF, event_type: str = ASSIGNED
    ) -> None:
        super().__init__(topic=prefix + topic, event_type=event_type)
        self.bootstrap = bootstrap
        self.group = prefix + group
        self._consumer: AIOKafkaConsumer | None = None

    async def _prepare(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        deadline = time.monotonic() + 30
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partitions of {self.topic} assigned to the observer")
            await self._consumer.getmany(timeout_ms=100)
        for partition in self._consumer.assignment():
            await self._consumer.position(partition)  # fixes "latest" before anything is posted

    async def _read(self) -> list[tuple[Sequence[tuple[str, bytes]], bytes]]:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
        return [(m.headers, m.value or b"") for records in batches.values() for m in records]

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


class EmbeddedAssignments(AssignmentWatcher):
    """Polls the embedded log's table in ``bus.db`` read-only, from its current end."""

    def __init__(
        self, path: Path, *, poll_seconds: float = 0.005, topic: str = LEADS_HANDOFF, event_type: str = ASSIGNED
    ) -> None:
        super().__init__(topic=topic, event_type=event_type)
        self.path = path
        self.poll_seconds = poll_seconds
        self._conn: sqlite3.Connection | None = None
        self._position = 0

    async def _prepare(self) -> None:
        # Reads run in a worker thread: a read waiting on the writers must not stall the load generator.
        self._conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._position = int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM log").fetchone()[0])

    def _fetch(self) -> list[Any]:
        assert self._conn is not None
        return self._conn.execute(
            "SELECT seq, headers, value FROM log WHERE topic = ? AND seq > ? ORDER BY seq LIMIT 1000",
            (self.topic, self._position),
        ).fetchall()

    async def _read(self) -> list[tuple[Sequence[tuple[str, bytes]], bytes]]:
        rows = await asyncio.to_thread(self._fetch)
        if not rows:
            await asyncio.sleep(self.poll_seconds)
            return []
        self._position = int(rows[-1][0])
        return [
            ([(name, base64.b64decode(raw)) for name, raw in json.loads(headers)], bytes(value))
            for _, headers, value in rows
        ]

    async def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class Baton:
    """A running system's HTTP API, as the benchmark drives it."""

    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str], headers: dict[str, str]) -> None:
        self.client = client
        self.urls = urls
        self.headers = headers
        self.refusals: Counter[str] = Counter()

    def _refused(self, answer: httpx.Response) -> None:
        key = str(answer.status_code)
        if not self.refusals[key]:
            logger.warning("%s answered %s: %s", answer.request.url.path, key, answer.text[:300])
        self.refusals[key] += 1

    async def create_reps(self, count: int = 4) -> None:
        """Reps with room for every lead of the run."""
        for i in range(count):
            answer = await self.client.post(
                f"{self.urls['handoff']}/v1/reps",
                json={"rep_id": f"bench-rep-{i}", "name": f"Bench {i}", "team": "bench", "capacity": REP_CAPACITY},
                headers=self.headers,
            )
            if answer.status_code not in (201, 409):
                raise RuntimeError(f"could not create a rep: {answer.status_code} {answer.text}")

    async def create_webhook_source(self, name: str) -> str:
        """Creates a ``standard-webhooks`` source with no preset (bodies are canonical leads); its secret."""
        answer = await self.client.post(
            f"{self.urls['lead-ingest']}/v1/sources",
            json={"name": name, "verification": "standard-webhooks"},
            headers=self.headers,
        )
        if answer.status_code != 201:
            raise RuntimeError(f"could not create a webhook source: {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["secret"])

    async def totals(self) -> dict[str, int]:
        """Metrics' all-time totals."""
        answer = await self.client.get(f"{self.urls['metrics']}/v1/kpis", headers=self.headers)
        answer.raise_for_status()
        return {k: int(v) for k, v in answer.json()["totals"].items() if isinstance(v, int)}

    async def post_lead(self, lead: dict[str, Any], *, client: httpx.AsyncClient | None = None) -> str | None:
        """Posts one lead (on ``client`` if given); its id, or None when refused."""
        answer = await (client or self.client).post(
            f"{self.urls['lead-ingest']}/v1/leads", json=lead, headers=self.headers
        )
        if answer.status_code >= 300:
            self._refused(answer)
            return None
        return str(answer.json()["lead_id"])

    async def post_batch(self, leads: list[dict[str, Any]]) -> int:
        """Posts a batch; how many of its leads were taken."""
        answer = await self.client.post(
            f"{self.urls['lead-ingest']}{BATCH_PATH}", json={"leads": leads}, headers=self.headers
        )
        if answer.status_code >= 300:
            self._refused(answer)
            return 0
        return accepted_items(answer.json())

    async def batch_available(self, tag: str) -> tuple[bool, str]:
        """Tries the batch endpoint with one lead.

        Returns:
            Whether it takes leads, and why not.
        """
        answer = await self.client.post(
            f"{self.urls['lead-ingest']}{BATCH_PATH}",
            json={"leads": [hand_raiser(tag + "probe", 0)]},
            headers=self.headers,
        )
        if answer.status_code in (404, 405):
            return False, f"not available ({BATCH_PATH} answers {answer.status_code})"
        if answer.status_code >= 300:
            return False, f"not available ({BATCH_PATH} answers {answer.status_code}: {answer.text[:200]})"
        if accepted_items(answer.json()) != 1:
            return False, f"not available (unexpected answer {answer.text[:200]})"
        return True, ""


def accepted_items(body: Any) -> int:
    """Counts the items of a per-item batch answer that carry a ``lead_id`` and no error.

    Args:
        body: The decoded answer: a list of items, or an object holding one.

    Returns:
        How many leads were taken.
    """
    items: Any = body
    if isinstance(body, dict):
        items = next((v for k, v in body.items() if k in ("items", "results", "leads") and isinstance(v, list)), [])
    if not isinstance(items, list):
        return 0
    taken = 0
    for item in items:
        if not isinstance(item, dict) or not item.get("lead_id") or item.get("error") or item.get("errors"):
            continue
        status = item.get("status")
        if isinstance(status, int) and status >= 300:
            continue
        taken += 1
    return taken


def _completed(totals: dict[str, int], baseline: dict[str, int]) -> int:
    return min(totals.get(k, 0) - baseline.get(k, 0) for k in ("received", "mql", "assigned"))


def lag_summary(
    samples: Sequence[tuple[float, int, int]], *, post_seconds: float, cap: int, throttled: bool
) -> dict[str, Any]:
    """Says whether the backlog (posted − counted) stayed level while posting.

    Args:
        samples: ``(seconds since start, posted, counted)``.
        post_seconds: How long posting lasted.
        cap: The largest backlog at which posting waited.
        throttled: Whether posting ever waited for the backlog.

    Returns:
        ``max_backlog``, ``growth_per_second`` (least-squares slope over the second half of posting),
        ``stable`` (growth under 5 % of the posting rate), ``throttled``, ``cap``, ``samples``.
    """
    backlog = [(t, posted - counted) for t, posted, counted in samples]
    late = [(t, b) for t, b in backlog if post_seconds / 2 <= t <= post_seconds]
    growth = 0.0
    if len(late) >= 2:
        mean_t = sum(t for t, _ in late) / len(late)
        mean_b = sum(b for _, b in late) / len(late)
        spread = sum((t - mean_t) ** 2 for t, _ in late)
        if spread > 0:
            growth = sum((t - mean_t) * (b - mean_b) for t, b in late) / spread
    posted_rate = max((posted for t, posted, _ in samples if t <= post_seconds), default=0) / max(post_seconds, 1e-9)
    return {
        "max_backlog": max((b for _, b in backlog), default=0),
        "growth_per_second": round(growth, 1),
        "stable": growth <= max(0.05 * posted_rate, 1.0),
        "throttled": throttled,
        "cap": cap,
        "samples": [[round(t, 2), b] for t, b in backlog],
    }


def _recent_rate(samples: Sequence[tuple[float, int, int]], window: float = 2.0) -> float:
    if len(samples) < 2:
        return 0.0
    last_t, _, last_counted = samples[-1]
    first = next((s for s in samples if s[0] >= last_t - window), samples[0])
    return (last_counted - first[2]) / (last_t - first[0]) if last_t > first[0] else 0.0


async def sustained_rate(
    baton: Baton,
    *,
    tag: str,
    post_seconds: float,
    backlog_seconds: float,
    min_backlog: int,
    drain_timeout: float,
    batch: bool,
    batch_size: int,
    concurrency: int,
) -> dict[str, Any]:
    """Posts hand-raisers as fast as intake takes them, then waits until metrics counted them all assigned.

    Posting waits while the backlog (posted − counted by metrics) is over ``backlog_seconds`` of the
    pipeline's recent completion rate (at least ``min_backlog``): when intake outruns the pipeline,
    the offered load settles at what the pipeline sustains and the run ends in bounded time.

    Returns:
        ``leads_per_second`` (leads ÷ time from the first post until metrics counted the last one
        received, MQL and assigned), ``steady_leads_per_second`` (counted per second over the second
        half of posting), ``leads``, ``elapsed_seconds``, ``completed``, ``failed``, ``lag``.
    """
    baseline = await baton.totals()
    refused_before = Counter(baton.refusals)
    posted = failed = counted = in_flight = 0
    size = batch_size if batch else 1
    cap = max(min_backlog, concurrency * size)
    largest_cap = cap
    throttled = False
    sequence = 0
    samples: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    post_until = started + post_seconds

    async def poster() -> None:
        nonlocal posted, failed, in_flight, sequence, throttled
        while time.perf_counter() < post_until:
            if posted + in_flight - counted + size > cap:
                throttled = True
                await asyncio.sleep(0.05)
                continue
            leads = [hand_raiser(tag, sequence + i) for i in range(size)]
            sequence += size
            in_flight += size
            try:
                taken = await baton.post_batch(leads) if batch else int(await baton.post_lead(leads[0]) is not None)
            except httpx.HTTPError as exc:
                baton.refusals[type(exc).__name__] += 1
                taken = 0
            in_flight -= size
            posted += taken
            failed += size - taken

    async def sampler() -> None:
        nonlocal counted, cap, largest_cap
        while True:
            with contextlib.suppress(httpx.HTTPError):
                counted = _completed(await baton.totals(), baseline)
                samples.append((time.perf_counter() - started, posted, counted))
                cap = max(min_backlog, concurrency * size, int(backlog_seconds * _recent_rate(samples)))
                largest_cap = max(largest_cap, cap)
            await asyncio.sleep(0.5)

    watch = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        posting = time.perf_counter() - started
        drain_until = time.perf_counter() + drain_timeout
        finished = None
        while time.perf_counter() < drain_until:
            with contextlib.suppress(httpx.HTTPError):
                counted = _completed(await baton.totals(), baseline)
                if counted >= posted:
                    finished = time.perf_counter()
                    break
            await asyncio.sleep(0.1)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    elapsed = (finished or time.perf_counter()) - started
    steady = [s for s in samples if posting / 2 <= s[0] <= posting]
    steady_rate = (steady[-1][2] - steady[0][2]) / (steady[-1][0] - steady[0][0]) if len(steady) >= 2 else None
    return {
        "leads_per_second": (posted if finished else counted) / elapsed if elapsed > 0 else None,
        "steady_leads_per_second": round(steady_rate, 1) if steady_rate is not None else None,
        "leads": posted,
        "counted": counted,
        "failed": failed,
        "refused": dict(baton.refusals - refused_before),
        "completed": finished is not None,
        "elapsed_seconds": round(elapsed, 2),
        "posting_seconds": round(posting, 2),
        "batch": batch,
        "batch_size": size,
        "lag": lag_summary(samples, post_seconds=posting, cap=largest_cap, throttled=throttled),
    }


POSTS_IN_FLIGHT = 64


async def latency_under_load(
    baton: Baton, watcher: AssignmentWatcher, *, tag: str, rate: float, seconds: float, settle_timeout: float
) -> dict[str, Any]:
    """Open loop: posts single hand-raisers on a fixed schedule and times each until its assignment is seen.

    Each lead's clock starts at its scheduled send time, so a slow answer delays no later lead and
    none of the waiting is left out.

    Args:
        baton: The system.
        watcher: Sees ``lead.assigned`` events.
        tag: Makes e-mails unique.
        rate: Leads per second to offer.
        seconds: How long to offer them.
        settle_timeout: How long to wait afterwards for the last assignments.

    Returns:
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, ``measured``, ``missing``, ``failed``,
        ``offered_rate``, ``answered_rate`` (posts answered per second), ``post_p50_ms`` and
        ``post_p99_ms`` (until the 202), ``max_backlog`` (answered but not yet assigned),
        ``behind_schedule_ms`` (how late the generator itself sent).
    """
    count = max(int(rate * seconds), 1)
    refused_before = Counter(baton.refusals)
    sent_at: dict[str, float] = {}
    answered: list[float] = []
    failed = 0
    lateness = 0.0
    max_backlog = 0

    # At most POSTS_IN_FLIGHT posts at once, each on a client of its own with one connection: the rest
    # wait in an O(1) queue here. One shared client's pool would rescan every connection for every
    # waiting request and become the bottleneck itself. A wait still counts against Baton, since each
    # lead's clock started at its scheduled time.
    clients: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for _ in range(POSTS_IN_FLIGHT):
        clients.put_nowait(httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)))

    async def post(n: int, due: float) -> None:
        nonlocal failed
        client = await clients.get()
        try:
            lead_id = await baton.post_lead(hand_raiser(tag, n), client=client)
        except httpx.HTTPError as exc:
            baton.refusals[type(exc).__name__] += 1
            lead_id = None
        finally:
            clients.put_nowait(client)
        answered.append((time.perf_counter() - due) * 1000)
        if lead_id is None:
            failed += 1
        else:
            sent_at[lead_id] = due

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for n in range(count):
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lateness = max(lateness, -delay)
        tasks.append(asyncio.create_task(post(n, due)))
        if n % max(int(rate), 1) == 0:
            max_backlog = max(max_backlog, sum(1 for lead_id in sent_at if lead_id not in watcher.seen))
    await asyncio.gather(*tasks)
    answered_rate = count / max(time.perf_counter() - started, 1e-9)
    while not clients.empty():
        await clients.get_nowait().aclose()
    await watcher.wait_for(list(sent_at), settle_timeout)
    latencies = [(watcher.seen[i].at - t) * 1000 for i, t in sent_at.items() if i in watcher.seen]
    return {
        "offered_rate": round(rate, 1),
        "answered_rate": round(answered_rate, 1),
        "seconds": seconds,
        "measured": len(latencies),
        "missing": len(sent_at) - len(latencies),
        "failed": failed,
        "refused": dict(baton.refusals - refused_before),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=None),
        "post_p50_ms": percentile(answered, 50),
        "post_p99_ms": percentile(answered, 99),
        "max_backlog": max_backlog,
        "behind_schedule_ms": round(lateness * 1000, 1),
    }


async def event_to_kpi(
    baton: Baton, watcher: AssignmentWatcher, *, tag: str, leads: int, wait_seconds: float = 15
) -> dict[str, Any]:
    """Posts single hand-raisers one at a time; for each, the time from its ``lead.assigned`` event's CloudEvents
    ``time`` until ``GET /v1/kpis`` counts it (polled every 10 ms).

    Returns:
        ``p50_ms``, ``max_ms``, ``measured``, ``missing``, and the same from when the observer saw the event.
    """
    delays: list[float] = []
    from_seen: list[float] = []
    missing = 0
    await settle(baton)
    for n in range(leads):
        baseline = (await baton.totals()).get("assigned", 0)
        lead_id = await baton.post_lead(hand_raiser(tag, n))
        if lead_id is None or not await watcher.wait_for([lead_id], wait_seconds):
            missing += 1
            continue
        seen = watcher.seen[lead_id]
        if await _counted_assigned(baton, baseline + 1, wait_seconds=wait_seconds):
            delays.append((time.time() - seen.event_time) * 1000)
            from_seen.append((time.perf_counter() - seen.at) * 1000)
        else:
            missing += 1
    return {
        "measured": len(delays),
        "missing": missing,
        "p50_ms": percentile(delays, 50),
        "max_ms": max(delays, default=None),
        "from_seen_p50_ms": percentile(from_seen, 50),
        "from_seen_max_ms": max(from_seen, default=None),
    }


async def _counted_assigned(baton: Baton, assigned: int, *, wait_seconds: float) -> bool:
    deadline = time.perf_counter() + wait_seconds
    while (await baton.totals()).get("assigned", 0) < assigned:
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def until_still(read: Callable[[], Awaitable[object]], *, quiet_seconds: float, wait_seconds: float) -> bool:
    """Waits until ``read`` gives the same twice ``quiet_seconds`` apart; False if it still moves at the deadline."""
    deadline = time.perf_counter() + wait_seconds
    last = await read()
    while time.perf_counter() < deadline:
        await asyncio.sleep(quiet_seconds)
        now = await read()
        if now == last:
            return True
        last = now
    return False


async def settle(baton: Baton, *, quiet_seconds: float = 1.0, wait_seconds: float = 30) -> bool:
    """Waits until metrics' totals stop moving, so that the next phase's counts are its own."""
    return await until_still(baton.totals, quiet_seconds=quiet_seconds, wait_seconds=wait_seconds)


async def wait_until_counted(baton: Baton, received: int, *, wait_seconds: float) -> bool:
    """Waits until metrics counted at least ``received`` leads received, so the next phase starts on a quiet system."""
    deadline = time.perf_counter() + wait_seconds
    while time.perf_counter() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (await baton.totals()).get("received", 0) >= received:
                return True
        await asyncio.sleep(0.25)
    return False
