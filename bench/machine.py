"""What the benchmark ran on."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_info(*, kafka: bool) -> dict[str, Any]:
    """Cores, memory, CPU model, versions and the date.

    Args:
        kafka: Whether to ask the local Kafka for its version.

    Returns:
        The machine description for the report.
    """
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    wrk = _output(["wrk", "-v"])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory_kb.split()[0]) / 1024 / 1024, 1) if memory_kb else None,
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kafka": _output([str(ROOT / "deploy/local/kafka.sh"), "version"]) if kafka else None,
        "postgresql": None,
        "wrk": wrk.split(" [")[0].removeprefix("wrk ") if wrk else None,
        "commit": _commit(),
    }


def _commit() -> str | None:
    head = _output(["git", "rev-parse", "--short", "HEAD"])
    if head and _output(["git", "status", "--porcelain", "--untracked-files=no"]):
        return f"{head} with uncommitted changes"
    return head
