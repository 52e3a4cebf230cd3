"""The Prometheus metrics every service shares: consumers, outbox, dead letters, lag and readiness.

Counters and the batch histogram are updated where the work happens, in-process and cheaply. The
gauges that need a question to the database or the bus (outbox backlog, consumer lag) are set by
``ServiceTelemetry``, which the runtime refreshes in the background every
``TELEMETRY_REFRESH_SECONDS``, never on the request path; readiness is set by every ``/readyz``
answer and by those refreshes.

Names follow Prometheus' conventions: base units in the name (``_seconds``, ``_records``,
``_events``), ``_total`` on counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from prometheus_client import Counter, Gauge, Histogram

from baton.bus import Bus

logger = logging.getLogger(__name__)

TELEMETRY_REFRESH_SECONDS = 10.0

CONSUMER_EVENTS = Counter(
    "baton_consumer_events_total",
    "Events a consumer group took, by event type and outcome: applied, duplicate (applied before, "
    "changed nothing) or dead_lettered (parked on the topic's DLQ). Counted once their transaction commits.",
    ["group", "type", "outcome"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "baton_consumer_batch_seconds",
    "Time a consumer group took to apply one batch, retries and one-by-one fallback included.",
    ["group"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "baton_consumer_lag_records",
    "Records a consumer group has still to apply on a partition: the log's end minus the group's committed position.",
    ["group", "topic", "partition"],
)
DLQ_EVENTS = Counter(
    "baton_dlq_events_total",
    "Events a consumer group parked on <topic>.dlq, by the topic they came from.",
    ["group", "topic"],
)
OUTBOX_BACKLOG = Gauge(
    "baton_outbox_backlog_events", "Events written to the service's outbox and not yet published.", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "baton_outbox_published_total", "Events the service's outbox relay published to the bus.", ["service"]
)
READY = Gauge(
    "baton_ready", "1 while a readiness check passes (database, bus), 0 while it fails.", ["service", "check"]
)

UNKNOWN_TYPE = "unknown"
"""The ``type`` label of an event too broken to name its type."""


def show_readiness(service: str, checks: Mapping[str, bool]) -> None:
    """Sets ``baton_ready`` from the outcome of the readiness checks.

    Args:
        service: The service's name.
        checks: Each check's name and whether it passed.
    """
    for check, ok in checks.items():
        READY.labels(service, check).set(1 if ok else 0)


class ServiceTelemetry:
    """Keeps one service's lag, backlog and readiness gauges current."""

    def __init__(
        self,
        *,
        service: str,
        bus: Bus,
        groups: Mapping[str, Sequence[str]],
        backlog: Callable[[], Awaitable[int]],
        readiness: Callable[[], Awaitable[Mapping[str, bool]]],
    ) -> None:
        """Describes what to watch.

        Args:
            service: The service's name, the ``service`` label.
            bus: The service's started bus, asked for each group's lag.
            groups: The service's consumer groups and the topics each reads.
            backlog: Counts the rows waiting in the service's outbox.
            readiness: Runs the readiness checks (which set ``baton_ready`` themselves).
        """
        self.service = service
        self.bus = bus
        self.groups = {group: tuple(topics) for group, topics in groups.items()}
        self.backlog = backlog
        self.readiness = readiness
        self._lag_shown: dict[str, set[tuple[str, str]]] = {}

    async def refresh(self) -> None:
        """Reads the outbox backlog, every group's lag and readiness once, and sets the gauges.

        A part that fails keeps its gauges at their last values and is logged; the others are still set.
        """
        try:
            OUTBOX_BACKLOG.labels(self.service).set(await self.backlog())
        except Exception:
            logger.warning("counting the outbox backlog failed", exc_info=True, extra={"service_name": self.service})
        for group, topics in self.groups.items():
            try:
                lag = await self.bus.lag(group, topics)
            except Exception:
                logger.warning("reading consumer lag failed", exc_info=True, extra={"group": group})
                continue
            self._show_lag(group, {(topic, str(partition)): records for (topic, partition), records in lag.items()})
        await self.readiness()

    def _show_lag(self, group: str, lag: Mapping[tuple[str, str], int]) -> None:
        # A partition that is gone (a topic re-created with fewer) leaves the gauge instead of showing its last value.
        for topic, partition in self._lag_shown.get(group, set()) - lag.keys():
            CONSUMER_LAG.remove(group, topic, partition)
        for (topic, partition), records in lag.items():
            CONSUMER_LAG.labels(group, topic, partition).set(records)
        self._lag_shown[group] = set(lag)

    def forget(self) -> None:
        """Removes the lag series this service showed: a stopped consumer's last lag is no reading."""
        for group, shown in self._lag_shown.items():
            for topic, partition in shown:
                CONSUMER_LAG.remove(group, topic, partition)
        self._lag_shown.clear()

    async def run(self, interval: float = TELEMETRY_REFRESH_SECONDS) -> None:
        """Refreshes at once and then every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.warning("refreshing telemetry failed", exc_info=True, extra={"service_name": self.service})
            await asyncio.sleep(interval)
