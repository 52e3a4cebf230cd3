"""Runs wrk with ``bench/leads.lua`` and reads its output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).with_name("leads.lua")

_UNITS_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_REQUESTS_PER_SECOND = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_JSON_LINE = re.compile(r"^wrk-json: (\{.*\})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured.

    Attributes:
        requests: Requests completed.
        seconds: How long the run lasted.
        requests_per_second: wrk's own ``Requests/sec``.
        non_2xx: Answers that were neither 2xx nor 3xx.
        socket_errors: Connect, read, write and timeout errors.
        latency_ms: Latency percentiles (``p50``, ``p90``, ``p99``, … and ``max`` when the script reported it).
        statuses: Answers counted by HTTP status, when the script reported them.
        items: Batch items the server answered with a ``lead_id``, when the script counted them.
        exhausted: Requests a thread asked for after its pool of signed deliveries ran out (sent unsigned).
        cpu_seconds: CPU time wrk itself used over the run, all threads, when the script reported it.
    """

    requests: int
    seconds: float
    requests_per_second: float
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    items: int | None = None
    exhausted: int = 0
    cpu_seconds: float | None = None

    @property
    def errors(self) -> int:
        """Requests that did not get a 2xx answer: non-2xx answers plus socket errors."""
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def load_generator_cores(self) -> float | None:
        """wrk's own CPU seconds per second of the run (3 decimals), when the script reported them."""
        if self.cpu_seconds is None:
            return None
        return round(self.cpu_seconds / (self.seconds or 1.0), 3)

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        if self.statuses:
            return sum(count for status, count in self.statuses.items() if status.startswith("2"))
        return max(self.requests - self.non_2xx, 0)


def parse_wrk_output(text: str) -> WrkResult:
    """Reads the summary wrk prints (with ``--latency``) and the ``wrk-json`` line ``leads.lua`` adds.

    Args:
        text: wrk's standard output.

    Returns:
        The parsed figures.

    Raises:
        ValueError: The text is not a wrk summary.
    """
    rate = _REQUESTS_PER_SECOND.search(text)
    total = _TOTAL.search(text)
    if rate is None or total is None:
        raise ValueError(f"not a wrk summary: {text[-500:]!r}")
    requests = int(total.group(1))
    seconds = float(total.group(2)) * _UNITS_TO_MS[total.group(3)] / 1000
    non_2xx = _NON_2XX.search(text)
    socket = _SOCKET_ERRORS.search(text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), (int(g) for g in socket.groups()), strict=True))
        if socket
        else {}
    )
    latency = {
        _percentile_key(match.group(1)): float(match.group(2)) * _UNITS_TO_MS[match.group(3)]
        for match in _PERCENTILE.finditer(text)
    }
    statuses: dict[str, int] = {}
    items: int | None = None
    exhausted = 0
    cpu_seconds: float | None = None
    extra = _JSON_LINE.search(text)
    if extra is not None:
        reported = json.loads(extra.group(1))
        statuses = {str(k): int(v) for k, v in reported.get("statuses", {}).items()}
        items = int(reported["items"]) if "items" in reported else None
        latency.update({k: v / 1000 for k, v in reported.get("latency_us", {}).items()})
        seconds = reported.get("duration_us", seconds * 1e6) / 1e6
        exhausted = int(reported.get("exhausted", 0))
        cpu_seconds = reported["cpu_us"] / 1e6 if "cpu_us" in reported else None
    return WrkResult(
        requests=requests,
        seconds=seconds,
        requests_per_second=float(rate.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
        latency_ms=latency,
        statuses=statuses,
        items=items,
        exhausted=exhausted,
        cpu_seconds=cpu_seconds,
    )


def _percentile_key(percent: str) -> str:
    value = float(percent)
    return f"p{int(value)}" if value.is_integer() else f"p{value:g}"


def wrk_available() -> bool:
    """Whether the ``wrk`` command is installed."""
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    token: str,
    tag: str,
    batch: int = 0,
    pool: Path | None = None,
    threads: int = 2,
    connections: int = 32,
    seconds: float = 10,
) -> WrkResult:
    """Loads ``url`` with ``leads.lua`` for a while.

    Args:
        url: The endpoint to POST to.
        token: Bearer token for the requests.
        tag: Makes this run's e-mail addresses unique.
        batch: Leads per request (``{"leads": [...]}``); 0 posts one lead per request.
        pool: Sends these signed webhook deliveries instead, one file per thread (``<pool>.1`` …, see
            ``bench.webhooks.write_pool``); ``token``, ``tag`` and ``batch`` are then unused.
        threads: wrk threads.
        connections: Connections kept open, spread over the threads.
        seconds: How long to load.

    Returns:
        The parsed result.

    Raises:
        RuntimeError: wrk failed or printed no summary.
    """
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(int(round(seconds)), 1)}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(SCRIPT),
        url,
        "--",
        token,
        tag,
        str(batch),
        str(pool) if pool is not None else "",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout[-500:]}")
    return parse_wrk_output(done.stdout)
