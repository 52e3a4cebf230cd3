"""Signed webhook intake under wrk: ``POST /v1/sources/{source}/leads``, one new person per Standard Webhooks delivery.

The deliveries are signed here, before the run, into a pool that ``bench/leads.lua`` sends once each: wrk does not
sign. wrk's LuaJIT has no HMAC, and a SHA-256 in Lua would run two hashes per request on the same two cores as the
server being loaded, taking from the very figure it measures; sending a pre-signed line costs wrk less than building
the single-POST phase's body. ``standardwebhooks``, the library lead-ingest verifies with, signs a pool that not even
the bare FastAPI endpoint could drain in the run within a second or two, before wrk starts, and a run lasts seconds,
well inside the 5 minutes the server allows a ``webhook-timestamp``. A thread that still runs out stops and the run
shows errors (``WrkResult.exhausted``), never retried deliveries passed off as new leads.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from bench.intake import intake_figures
from bench.pipeline import Baton
from bench.wrk import run_wrk

WEBHOOK_PATH = "/v1/sources/{source}/leads"
POOL_HEADROOM = 1.5
"""How many times the deliveries the bare FastAPI endpoint could take in the run each thread is given."""
FALLBACK_CEILING = 20_000.0
"""Requests per second assumed for sizing the pool when the bare endpoint's limit was not measured."""

# The same people bench/leads.lua posts to POST /v1/leads, so both phases carry bodies alike; no "source": the
# webhook's source names itself.
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie")
_TITLES = ("VP Marketing", "Head of Growth", "Director of Sales", "CTO", "Marketing Manager", "Engineer")
_COUNTRIES = ("US", "DE", "GB", "FR", "CA", "NL", "SE", "ES")
_CAMPAIGNS = ("spring-launch", "retargeting", "partner-webinar")
_SIZES = (12, 80, 250, 1200, 5000)


def webhook_lead(tag: str, thread: int, n: int) -> dict[str, Any]:
    """The ``n``-th new person wrk thread ``thread`` delivers, in the canonical lead shape."""
    first, last = _FIRST[n % len(_FIRST)], _LAST[(n * 7 + 3) % len(_LAST)]
    return {
        "email": f"{first.lower()}.{last.lower()}.{tag}.w{thread}.{n}@example.com",
        "first_name": first,
        "last_name": last,
        "company": f"{last} Labs",
        "title": _TITLES[n % len(_TITLES)],
        "country": _COUNTRIES[(n * 3 + 1) % len(_COUNTRIES)],
        "company_size": _SIZES[n % len(_SIZES)],
        "campaign": _CAMPAIGNS[n % len(_CAMPAIGNS)],
    }


def pool_size(*, ceiling_per_second: float | None, seconds: float, threads: int, connections: int) -> int:
    """Deliveries per wrk thread: more than the ceiling rate could take over the run (wrk runs whole seconds)."""
    rate = ceiling_per_second if ceiling_per_second and ceiling_per_second > 0 else FALLBACK_CEILING
    wrk_seconds = max(round(seconds), 1) + 1
    return math.ceil(rate * wrk_seconds * POOL_HEADROOM / threads) + connections


def write_pool(prefix: Path, *, secret: str, tag: str, per_thread: int, threads: int, now: float) -> list[Path]:
    """Writes ``per_thread`` signed deliveries per wrk thread to ``<prefix>.<thread>``, as ``leads.lua`` reads them.

    Args:
        prefix: Where the files go, ``.1``, ``.2``, … appended.
        secret: The source's ``whsec_`` secret.
        tag: Makes this run's webhook ids and e-mails unique.
        per_thread: Deliveries per file.
        threads: wrk threads, one file each.
        now: Unix time every delivery is stamped with.

    Returns:
        The files written.
    """
    signer = Webhook(secret)
    stamped_at = datetime.fromtimestamp(int(now), UTC)
    timestamp = str(int(now))
    written = []
    for thread in range(1, threads + 1):
        path = prefix.with_name(f"{prefix.name}.{thread}")
        with path.open("w", encoding="utf-8") as out:
            for n in range(1, per_thread + 1):
                webhook_id = f"msg_{tag}_{thread}_{n}"
                body = json.dumps(webhook_lead(tag, thread, n), separators=(",", ":"))
                signed = signer.sign(webhook_id, stamped_at, body)
                out.write(f"{webhook_id}\t{timestamp}\t{signed}\t{body}\n")
        written.append(path)
    return written


async def signed_intake(
    baton: Baton,
    *,
    tag: str,
    seconds: float,
    ceiling_per_second: float | None,
    threads: int = 2,
    connections: int = 32,
) -> dict[str, Any]:
    """Creates a ``standard-webhooks`` source and loads its webhook with wrk, every request a new signed delivery.

    Args:
        baton: The running system.
        tag: Makes the source's name, webhook ids and e-mails unique.
        seconds: How long wrk loads.
        ceiling_per_second: The most requests per second the server could take (the bare endpoint's), to size the pool.
        threads: wrk threads.
        connections: Connections kept open.

    Returns:
        ``intake_figures`` of the run, with ``source`` and ``pool`` (deliveries signed).
    """
    source = f"bench-{tag}"
    secret = await baton.create_webhook_source(source)
    per_thread = pool_size(
        ceiling_per_second=ceiling_per_second, seconds=seconds, threads=threads, connections=connections
    )
    with tempfile.TemporaryDirectory(prefix="baton-bench-webhooks-") as workdir:
        prefix = Path(workdir) / "deliveries"
        started = time.perf_counter()
        await asyncio.to_thread(
            write_pool, prefix, secret=secret, tag=tag, per_thread=per_thread, threads=threads, now=time.time()
        )
        signing_seconds = time.perf_counter() - started
        result = await asyncio.to_thread(
            run_wrk,
            baton.urls["lead-ingest"] + WEBHOOK_PATH.format(source=source),
            token="",
            tag=tag,
            pool=prefix,
            threads=threads,
            connections=connections,
            seconds=seconds,
        )
    figures = intake_figures(result)
    figures["source"] = source
    figures["pool"] = per_thread * threads
    figures["signing_seconds"] = round(signing_seconds, 2)
    return figures
