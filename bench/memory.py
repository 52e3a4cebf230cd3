"""Resident memory of the service processes, sampled in the background while the load runs."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from baton.cli import SERVICES

SAMPLE_SECONDS = 0.5


def rss_mb(pid: int) -> float | None:
    """A process's resident memory (VmRSS) in MB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def service_pids_under(parent: int) -> dict[str, int]:
    """The four services among a ``baton run`` process's children, by the app factory on their command line.

    Args:
        parent: The ``baton run`` process id.

    Returns:
        Service name to process id.
    """
    found: dict[str, int] = {}
    for child in _children(parent):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        for service in SERVICES:
            if service.factory in command:
                found[service.name] = child
    return found


class RssSampler:
    """Samples each process's resident memory every half second and keeps the peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        """Reads every process once."""
        for name, pid in self.pids.items():
            value = rss_mb(pid)
            if value is not None and value > self.peak_mb.get(name, 0.0):
                self.peak_mb[name] = value

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
