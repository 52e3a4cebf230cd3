"""How long a lead takes from ``POST /v1/leads`` to showing up in the rep's assignments, per transport.

Run with ``make bench`` (which starts the local Kafka and PostgreSQL first). Reports p50, p90 and the
worst of N sequential hand-raiser leads, plus the time to start the system.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from tests.system import RunningSystem, embedded_system, kafka_system

POLL_SECONDS = 0.005


def measure(system: RunningSystem, leads: int) -> list[float]:
    """Posts hand-raisers one at a time and times each until the rep can pull it."""
    admin = system.token("admin")
    rep = system.token("assignments:read", rep_id="bench-rep")
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        created = client.post(
            f"{system.urls['handoff']}/v1/reps",
            json={"rep_id": "bench-rep", "name": "Bench", "capacity": 100_000},
            headers=admin,
        )
        created.raise_for_status()
        seen = 0
        for i in range(leads):
            started = time.perf_counter()
            posted = client.post(
                f"{system.urls['lead-ingest']}/v1/leads",
                json={"email": f"bench{i}-{time.time_ns()}@example.com", "activities": [{"type": "demo_request"}]},
                headers=admin,
            )
            posted.raise_for_status()
            while True:
                page = client.get(
                    f"{system.urls['handoff']}/v1/assignments",
                    params={"limit": 1, "cursor": str(seen)} if seen else {"limit": 1},
                    headers=rep,
                ).json()
                if page["items"]:
                    break
                if time.perf_counter() - started > 30:
                    raise RuntimeError("a lead was not assigned within 30 s")
                time.sleep(POLL_SECONDS)
            latencies.append(time.perf_counter() - started)
            seen += 1
    return latencies


def report(name: str, start: Callable[[Path], AbstractContextManager[RunningSystem]], leads: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        with start(Path(workdir)) as system:
            ready = time.perf_counter() - started
            latencies = sorted(measure(system, leads))
    p50 = statistics.median(latencies)
    p90 = latencies[int(len(latencies) * 0.9) - 1]
    print(
        f"{name:<22} start {ready:5.1f} s   POST→assignment over {leads} leads: "
        f"p50 {p50 * 1000:6.1f} ms  p90 {p90 * 1000:6.1f} ms  max {latencies[-1] * 1000:6.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=50)
    parser.add_argument("--transport", choices=("embedded", "kafka", "both"), default="both")
    args = parser.parse_args()
    if args.transport in ("embedded", "both"):
        report("embedded log + SQLite", lambda d: embedded_system(d, base_port=18301), args.leads)
    if args.transport in ("kafka", "both"):
        name = f"bench{time.time_ns() % 10**8}"
        report("Kafka + PostgreSQL", lambda d: kafka_system(d, name, base_port=18401), args.leads)


if __name__ == "__main__":
    main()
