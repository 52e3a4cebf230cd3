"""Turns measurements into figures with a target, a limit and a ratio, and writes them as JSON and markdown.

Everything here is pure: the measuring modules hand over plain dictionaries.

A figure's limit is what this machine's raw parts can do, measured in the same run:

* intake: the bare FastAPI 202 endpoint loaded by the same wrk command; signed webhook intake (one lead per
  request, like a single ``POST /v1/leads``) is held to the same single-request limit, so its ratio shows what
  the source lookup and the signature check cost on top of intake;
* end-to-end rate: the raw bus divided by the 4 events one MQL puts on it (received, scored,
  qualified, assigned). On Kafka the raw bus is aiokafka producing and consuming lead-sized messages
  (acks=all, idempotent); on the embedded log it is lead-sized rows appended to SQLite 100 per fsynced
  commit, as the log publishes a batch. Raw single-row commits (asyncpg, SQLite) are reported beside
  it but bound nothing here: Baton may batch its commits;
* latency: a floor, the sum of the steps that cannot be skipped. POST → assigned is 3 commits and
  3 hops (ingest → scoring → handoff → the observer); event → KPI is 1 hop and 1 commit. A commit is
  a lone single-row commit (PostgreSQL, or SQLite with fsync); a hop is a lone raw Kafka message
  produced and consumed, and on the embedded log the fsynced append is the hop;
* resident memory: the bare FastAPI app's process;
* handoff alone (MQLs published straight onto ``leads.scored``): the routed rate's limit is the raw
  bus divided by the 2 events one routed MQL puts on it (qualified, assigned); its latency's floor is
  1 commit and, on Kafka, 2 hops (the publish → handoff → the observer);
* scoring alone (``lead.received`` published straight onto ``leads.ingested``): the raw bus divided by
  the 2 events one scored lead puts on it (received, scored);
* metrics alone (received, qualified, assigned and accepted published straight onto the three topics):
  the raw bus itself, as metrics applies each message once;
* event → dashboard tile (from intake's 202 until ``GET /v1/stream`` pushes the lead counted): the
  event → KPI floor, 1 hop and 1 commit.

The ratio is Baton ÷ limit: for rates the share of the limit Baton reaches, for latency and memory
how many times the floor it takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Better = Literal["higher", "lower"]

TRANSPORT_NAMES = {"embedded": "embedded log + SQLite", "kafka": "Kafka + PostgreSQL"}
SERVICES = ("lead-ingest", "scoring", "handoff", "metrics")


@dataclass(frozen=True)
class Targets:
    """What Baton aims for (set for Kafka + PostgreSQL)."""

    intake_single: float = 1_000
    intake_batch: float = 5_000
    sustained: float = 500
    p99_at_half_ms: float = 250
    event_to_kpi_ms: float = 1_000
    rss_mb: float = 200


TARGETS = Targets()


@dataclass(frozen=True)
class PipelineModel:
    """What one MQL costs a transport, to turn raw limits into Baton's limits (see the module doc)."""

    bus_messages_per_lead: int
    hops_to_assigned: int
    commits_to_assigned: int
    hops_to_kpi: int
    commits_to_kpi: int
    bus_messages_per_routed: int
    hops_to_routed: int
    commits_to_routed: int
    bus_messages_per_scored: int = 2
    bus_messages_per_applied: int = 1


MODELS = {
    "kafka": PipelineModel(
        bus_messages_per_lead=4,
        hops_to_assigned=3,
        commits_to_assigned=3,
        hops_to_kpi=1,
        commits_to_kpi=1,
        bus_messages_per_routed=2,
        hops_to_routed=2,
        commits_to_routed=1,
    ),
    "embedded": PipelineModel(
        bus_messages_per_lead=4,
        hops_to_assigned=0,
        commits_to_assigned=3,
        hops_to_kpi=0,
        commits_to_kpi=1,
        bus_messages_per_routed=2,
        hops_to_routed=0,
        commits_to_routed=1,
    ),
}


@dataclass(frozen=True)
class Figure:
    """One reported number, next to its target and its limit."""

    key: str
    name: str
    value: float | None
    unit: str
    better: Better
    target: float | None = None
    limit: float | None = None
    limit_of: str = ""
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Baton ÷ limit, when both are known."""
        if self.value is None or self.limit is None or self.limit <= 0:
            return None
        return self.value / self.limit

    @property
    def meets_target(self) -> bool | None:
        """Whether the value reaches the target; None when either is missing."""
        if self.value is None or self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value < self.target

    def as_json(self) -> dict[str, Any]:
        """The figure as the JSON report holds it."""
        return {
            "name": self.name,
            "value": _rounded(self.value),
            "unit": self.unit,
            "better": self.better,
            "target": self.target,
            "target_op": None if self.target is None else (">=" if self.better == "higher" else "<"),
            "meets_target": self.meets_target,
            "limit": _rounded(self.limit),
            "limit_of": self.limit_of or None,
            "ratio": _rounded(self.ratio, 4),
            "note": self.note or None,
            "details": dict(self.details),
        }


def _rounded(value: float | None, digits: int = 2) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile.

    Args:
        values: Samples, in any order.
        q: The percentile, 0–100.

    Returns:
        The smallest sample with at least ``q`` % of the samples at or below it; None for no samples.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def _get(mapping: Mapping[str, Any], *path: str) -> Any:
    current: Any = mapping
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def transport_limits(transport: str, limits: Mapping[str, Any]) -> dict[str, float | None]:
    """Derives each figure's limit from the raw measurements (see the module doc).

    Args:
        transport: ``kafka`` or ``embedded``.
        limits: Raw measurements: ``fastapi`` (``single_rps``, ``batch_leads_per_second``, ``rss_mb``),
            ``bus`` (``messages_per_second``, and ``hop_ms`` on Kafka) and ``commits`` (``commit_ms``).

    Returns:
        Limit per figure key.
    """
    model = MODELS[transport]
    bus_rate = _get(limits, "bus", "messages_per_second")
    hop_ms = _get(limits, "bus", "hop_ms")
    commit_ms = _get(limits, "commits", "commit_ms")
    sustained = bus_rate / model.bus_messages_per_lead if bus_rate else None

    def floor(hops: int, commits: int) -> float | None:
        if commit_ms is None or (hops and hop_ms is None):
            return None
        return float(hops * (hop_ms or 0.0) + commits * commit_ms)

    return {
        "intake_single": _get(limits, "fastapi", "single_rps"),
        "intake_webhook": _get(limits, "fastapi", "single_rps"),
        "intake_batch": _get(limits, "fastapi", "batch_leads_per_second"),
        "sustained": sustained,
        "latency": floor(model.hops_to_assigned, model.commits_to_assigned),
        "event_to_kpi": floor(model.hops_to_kpi, model.commits_to_kpi),
        "rss": _get(limits, "fastapi", "rss_mb"),
        "routed": bus_rate / model.bus_messages_per_routed if bus_rate else None,
        "routing_latency": floor(model.hops_to_routed, model.commits_to_routed),
        "scored": bus_rate / model.bus_messages_per_scored if bus_rate else None,
        "metrics_applied": bus_rate / model.bus_messages_per_applied if bus_rate else None,
        "event_to_tile": floor(model.hops_to_kpi, model.commits_to_kpi),
    }


def _limit_names(transport: str, limits: Mapping[str, Any]) -> dict[str, str]:
    raw = "raw Kafka + PostgreSQL" if transport == "kafka" else "raw fsynced SQLite"
    bus = "raw Kafka" if transport == "kafka" else "raw SQLite appends"
    batch = _get(limits, "fastapi", "batch_size")
    return {
        "intake_single": "bare FastAPI 202 endpoint",
        "intake_webhook": "bare FastAPI 202 endpoint",
        "intake_batch": f"bare FastAPI 202 endpoint, {batch} leads per request" if batch else "bare FastAPI",
        "sustained": f"{bus} ÷ 4 events per lead",
        "latency": f"{raw} floor",
        "event_to_kpi": f"{raw} floor",
        "rss": "bare FastAPI process",
        "routed": f"{bus} ÷ 2 events per routed MQL",
        "routing_latency": f"{raw} floor, " + ("2 hops + 1 commit" if transport == "kafka" else "1 commit"),
        "scored": f"{bus} ÷ 2 events per scored lead",
        "metrics_applied": f"{bus}, 1 message per event",
        "event_to_tile": f"{raw} floor",
    }


def _errors_note(measured: Mapping[str, Any]) -> str:
    errors = measured.get("errors") or 0
    if not errors:
        return ""
    statuses = measured.get("statuses") or {}
    failed = ", ".join(f"{count}× {status}" for status, count in sorted(statuses.items()) if not status.startswith("2"))
    return f"ERRORS: {errors} of {measured.get('requests')} requests failed" + (f" ({failed})" if failed else "")


def _intake_note(measured: Mapping[str, Any]) -> str:
    """Latency per request, the load generator's own CPU and any error of a one-lead-per-request intake run."""
    if measured.get("error"):
        return f"ERROR: {measured['error']}"
    if not measured:
        return ""
    parts = [
        f"p50 {_fmt(_get(measured, 'latency_ms', 'p50'), 'ms')}, "
        f"p99 {_fmt(_get(measured, 'latency_ms', 'p99'), 'ms')} per request"
    ]
    cores = measured.get("load_generator_cores")
    if cores is not None:
        parts.append(f"wrk {cores:.0%} of a core")
    parts += [measured.get("note") or "", _errors_note(measured)]
    return "; ".join(p for p in parts if p)


def _latency_note(measured: Mapping[str, Any]) -> str:
    parts = [
        f"p50 {_fmt(measured.get('p50_ms'), 'ms')}, p95 {_fmt(measured.get('p95_ms'), 'ms')}, "
        f"max {_fmt(measured.get('max_ms'), 'ms')}",
        f"{measured.get('measured', 0)} leads at {_fmt(measured.get('offered_rate'), 'leads/s')}",
    ]
    answered = measured.get("answered_rate")
    if answered is not None and answered < 0.9 * (measured.get("offered_rate") or 0):
        parts.append(
            f"intake fell behind: answered {_fmt(answered, 'leads/s')}, "
            f"POST p50 {_fmt(measured.get('post_p50_ms'), 'ms')}, p99 {_fmt(measured.get('post_p99_ms'), 'ms')}"
        )
    if (measured.get("behind_schedule_ms") or 0) > 100:
        parts.append(f"load generator up to {_fmt(measured['behind_schedule_ms'], 'ms')} late")
    if measured.get("missing"):
        parts.append(f"ERRORS: {measured['missing']} not assigned in time")
    if measured.get("failed"):
        statuses = ", ".join(f"{count}× {status}" for status, count in sorted((measured.get("refused") or {}).items()))
        parts.append(f"ERRORS: {measured['failed']} posts failed" + (f" ({statuses})" if statuses else ""))
    if measured.get("max_backlog") is not None:
        parts.append(f"backlog ≤ {measured['max_backlog']}")
    return "; ".join(parts)


def _sustained_note(measured: Mapping[str, Any]) -> str:
    parts = [f"{measured.get('leads', 0)} MQLs in {_fmt(measured.get('elapsed_seconds'), 's')}"]
    parts.append("via " + ("POST /v1/leads:batch" if measured.get("batch") else "concurrent POST /v1/leads"))
    if measured.get("steady_leads_per_second") is not None:
        parts.append(f"{_fmt(measured['steady_leads_per_second'], 'leads/s')} in the second half of posting")
    lag = measured.get("lag") or {}
    if lag:
        state = "stable" if lag.get("stable") else "GROWING"
        growth = _fmt(lag.get("growth_per_second"), "leads/s")
        parts.append(f"lag {state} (backlog max {lag.get('max_backlog')}, {growth} growth)")
        if lag.get("throttled"):
            parts.append(f"intake outran the pipeline: posting waited at a backlog of up to {lag.get('cap')}")
    if not measured.get("completed", True):
        parts.append(f"ERRORS: only {measured.get('counted')} of {measured.get('leads')} counted before the timeout")
    if measured.get("failed"):
        statuses = ", ".join(f"{count}× {status}" for status, count in sorted((measured.get("refused") or {}).items()))
        parts.append(f"ERRORS: {measured['failed']} leads refused" + (f" ({statuses})" if statuses else ""))
    return "; ".join(parts)


def _saturated_note(measured: Mapping[str, Any], *, published: str, seen: str, missing: str) -> str:
    """A saturated phase's note: how long publishing its leads took, by when the last was seen, and any never seen."""
    if measured.get("error"):
        return f"ERROR: {measured['error']}"
    parts = [
        f"{measured.get('leads', 0)} {published} in {_fmt(_publish_ms(measured), 'ms')}, "
        f"{seen} by {_fmt(measured.get('elapsed_seconds'), 's')}"
    ]
    if measured.get("missing"):
        parts.append(f"ERRORS: {measured['missing']} of {measured.get('leads')} not seen {missing} before the timeout")
    return "; ".join(parts)


def _publish_ms(measured: Mapping[str, Any]) -> float | None:
    return measured["publish_seconds"] * 1000 if measured.get("publish_seconds") is not None else None


def _routed_note(measured: Mapping[str, Any]) -> str:
    return _saturated_note(
        measured,
        published="MQLs published onto leads.scored",
        seen=f"assigned over {measured.get('reps', '?')} reps",
        missing="assigned",
    )


def _scored_note(measured: Mapping[str, Any]) -> str:
    return _saturated_note(
        measured,
        published="nurture leads published onto leads.ingested",
        seen="lead.scored seen for the last",
        missing="scored",
    )


def _applied_note(measured: Mapping[str, Any]) -> str:
    if measured.get("error"):
        return f"ERROR: {measured['error']}"
    by_type = ", ".join(f"{count} {kind}" for kind, count in (measured.get("by_type") or {}).items())
    parts = [
        f"{measured.get('published', 0)} events published in {_fmt(_publish_ms(measured), 'ms')}; "
        f"{measured.get('events', 0)} applied in {_fmt(measured.get('elapsed_seconds'), 's')}"
        + (f" ({by_type}: scoring's scores and handoff's routings included)" if by_type else ""),
        "read from metrics' baton_consumer_events_total",
    ]
    if not measured.get("completed", True):
        parts.append("ERRORS: not every published event was applied before the timeout")
    return "; ".join(parts)


def transport_figures(transport: str, measured: Mapping[str, Any], limits: Mapping[str, Any]) -> list[Figure]:
    """Builds a transport's figures from what was measured and the raw limits.

    Args:
        transport: ``kafka`` or ``embedded``.
        measured: The transport's measurements, as ``bench.__main__`` collects them.
        limits: The raw limits for this transport (see ``transport_limits``).

    Returns:
        The figures, in report order.
    """
    limit = transport_limits(transport, limits)
    names = _limit_names(transport, limits)
    figures: list[Figure] = []

    single = measured.get("intake_single") or {}
    figures.append(
        Figure(
            "intake_single",
            "intake, single `POST /v1/leads`",
            single.get("leads_per_second"),
            "leads/s",
            "higher",
            TARGETS.intake_single,
            limit["intake_single"],
            names["intake_single"],
            note=_intake_note(single),
            details=single,
        )
    )

    webhook = measured.get("intake_webhook") or {}
    figures.append(
        Figure(
            "intake_webhook",
            "intake, signed webhook `POST /v1/sources/{source}/leads`",
            webhook.get("leads_per_second"),
            "leads/s",
            "higher",
            None,
            limit["intake_webhook"],
            names["intake_webhook"],
            note=_intake_note(webhook),
            details=webhook,
        )
    )

    batch = measured.get("intake_batch") or {}
    batch_note = batch.get("note") or ""
    if batch.get("available"):
        batch_note = "; ".join(
            p
            for p in (
                f"{batch.get('batch_size')} leads per request, p99 {_fmt(_get(batch, 'latency_ms', 'p99'), 'ms')}",
                batch_note,
                _errors_note(batch),
            )
            if p
        )
    figures.append(
        Figure(
            "intake_batch",
            "intake, `POST /v1/leads:batch`",
            batch.get("leads_per_second"),
            "leads/s",
            "higher",
            TARGETS.intake_batch,
            limit["intake_batch"],
            names["intake_batch"],
            note=batch_note,
            details=batch,
        )
    )

    sustained = measured.get("sustained") or {}
    figures.append(
        Figure(
            "sustained",
            "end-to-end sustained (POST → counted by metrics)",
            sustained.get("leads_per_second"),
            "leads/s",
            "higher",
            TARGETS.sustained,
            limit["sustained"],
            names["sustained"],
            note=_sustained_note(sustained) if sustained else "",
            details=sustained,
        )
    )

    for key, share, target in (("latency_50", 50, TARGETS.p99_at_half_ms), ("latency_80", 80, None)):
        latency = measured.get(key) or {}
        figures.append(
            Figure(
                key,
                f"POST → assigned p99 at {share}% of sustained",
                latency.get("p99_ms"),
                "ms",
                "lower",
                target,
                limit["latency"],
                names["latency"],
                note=_latency_note(latency) if latency else "",
                details=latency,
            )
        )

    kpi = measured.get("event_to_kpi") or {}
    kpi_note = f"{kpi.get('measured', 0)} leads" if kpi else ""
    if kpi.get("missing"):
        kpi_note += f"; ERRORS: {kpi['missing']} never reached the KPIs"
    for stat in ("p50", "max"):
        figures.append(
            Figure(
                f"event_to_kpi_{stat}",
                f"event → KPI API, {stat}",
                kpi.get(f"{stat}_ms"),
                "ms",
                "lower",
                TARGETS.event_to_kpi_ms,
                limit["event_to_kpi"],
                names["event_to_kpi"],
                note=kpi_note,
                details=kpi if stat == "p50" else {},
            )
        )

    routed = measured.get("routed") or {}
    figures.append(
        Figure(
            "routed",
            "handoff alone, routed (`lead.qualified` → `lead.assigned`, saturated)",
            routed.get("leads_per_second"),
            "leads/s",
            "higher",
            None,
            limit["routed"],
            names["routed"],
            note=_routed_note(routed) if routed else "",
            details=routed,
        )
    )
    routing = measured.get("routing_latency") or {}
    routing_note = _latency_note(routing) if routing else ""
    if routed and not routing:
        routing_note = "not measured: the saturated phase gave no complete rate"
    for stat in ("p50", "p99"):
        figures.append(
            Figure(
                f"routing_{stat}",
                f"handoff alone, `lead.qualified` → `lead.assigned` {stat} at 50% of routed",
                routing.get(f"{stat}_ms"),
                "ms",
                "lower",
                None,
                limit["routing_latency"],
                names["routing_latency"],
                note=routing_note,
                details=routing if stat == "p50" else {},
            )
        )

    scored = measured.get("scored") or {}
    figures.append(
        Figure(
            "scored",
            "scoring alone, scored (`lead.received` → `lead.scored`, saturated)",
            scored.get("leads_per_second"),
            "leads/s",
            "higher",
            None,
            limit["scored"],
            names["scored"],
            note=_scored_note(scored) if scored else "",
            details=scored,
        )
    )
    applied = measured.get("metrics_applied") or {}
    figures.append(
        Figure(
            "metrics_applied",
            "metrics alone, events applied (received, qualified, assigned, accepted; saturated)",
            applied.get("events_per_second"),
            "events/s",
            "higher",
            None,
            limit["metrics_applied"],
            names["metrics_applied"],
            note=_applied_note(applied) if applied else "",
            details=applied,
        )
    )
    tile = measured.get("event_to_tile") or {}
    tile_note = f"{tile.get('measured', 0)} leads posted one at a time on an idle system, from the 202" if tile else ""
    if tile.get("error"):
        tile_note = f"ERROR: {tile['error']}"
    elif tile.get("missing"):
        tile_note += f"; ERRORS: {tile['missing']} never reached the stream"
    for stat in ("p50", "max"):
        figures.append(
            Figure(
                f"event_to_tile_{stat}",
                f"event → dashboard tile (`GET /v1/stream` `kpis`), {stat}",
                tile.get(f"{stat}_ms"),
                "ms",
                "lower",
                None,
                limit["event_to_tile"],
                names["event_to_tile"],
                note=tile_note,
                details=tile if stat == "p50" else {},
            )
        )

    rss = measured.get("rss_mb") or {}
    for service in SERVICES:
        figures.append(
            Figure(
                f"rss_{service}",
                f"resident memory, {service} (peak)",
                rss.get(service),
                "MB",
                "lower",
                TARGETS.rss_mb,
                limit["rss"],
                names["rss"],
            )
        )
    return figures


def build_results(
    *,
    machine: Mapping[str, Any],
    limits: Mapping[str, Mapping[str, Any]],
    measured: Mapping[str, Mapping[str, Any]],
    mode: str,
    duration_seconds: float,
) -> dict[str, Any]:
    """Builds the JSON report.

    Args:
        machine: Cores, memory, CPU, versions, date.
        limits: Raw limits per transport.
        measured: Measurements per transport.
        mode: ``full`` or ``quick``.
        duration_seconds: How long the whole run took.

    Returns:
        The report, ready for ``json.dumps``.
    """
    transports: dict[str, Any] = {}
    for transport, values in measured.items():
        raw = limits.get(transport, {})
        transports[transport] = {
            "name": TRANSPORT_NAMES.get(transport, transport),
            "startup_seconds": _rounded(values.get("startup_seconds")),
            "error": values.get("error"),
            "limits": dict(raw),
            "figures": {f.key: f.as_json() for f in transport_figures(transport, values, raw)},
        }
    return {
        "mode": mode,
        "duration_seconds": round(duration_seconds, 1),
        "machine": dict(machine),
        "targets": asdict(TARGETS),
        "transports": transports,
    }


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    number = float(value)
    if unit == "ms":
        text = f"{number:,.0f}" if number >= 100 else f"{number:.1f}"
    elif unit == "s":
        text = f"{number:.1f}"
    elif number >= 100:
        text = f"{number:,.0f}"
    else:
        text = f"{number:.1f}"
    return f"{text} {unit}"


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2g}" if ratio < 10 else f"{ratio:,.0f}"


def _fmt_target(figure: Mapping[str, Any]) -> str:
    if figure.get("target") is None:
        return "—"
    return f"{figure['target_op'].replace('>=', '≥')} {_fmt(figure['target'], figure['unit'])}"


def _fmt_limit(figure: Mapping[str, Any]) -> str:
    if figure.get("limit") is None:
        return "—"
    return f"{_fmt(figure['limit'], figure['unit'])} ({figure['limit_of']})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(results: Mapping[str, Any]) -> str:
    """Renders the JSON report as markdown: a header line and one table per transport.

    Args:
        results: What ``build_results`` returned.

    Returns:
        Markdown text.
    """
    machine = results.get("machine", {})
    about = [
        f"{machine.get('date') or '?'}",
        f"{machine.get('cpu') or '?'}, {machine.get('cores') or '?'} cores, {machine.get('memory_gb') or '?'} GB",
        *(
            f"{label} {machine[key]}"
            for key, label in (("kafka", "Kafka"), ("postgresql", "PostgreSQL"), ("sqlite", "SQLite"))
            if machine.get(key)
        ),
        f"Python {machine.get('python') or '?'}",
        f"commit {machine.get('commit') or '?'}",
        f"{results.get('mode')} run, {results.get('duration_seconds')} s",
    ]
    lines = [
        "# Baton benchmark",
        "",
        " · ".join(about),
        "",
        "Targets are set for Kafka + PostgreSQL. Limits are this machine's raw parts, measured in the same "
        "run; ratio = Baton ÷ limit (rates: share of the limit reached; latency and memory: times the floor). "
        "How limits are derived: `bench/report.py`.",
    ]
    for transport in results.get("transports", {}).values():
        lines += [
            "",
            f"## {transport['name']} (started in {_fmt(transport.get('startup_seconds'), 's')})",
            "",
        ]
        if transport.get("error"):
            lines += [f"**ERROR:** {transport['error']}", ""]
        lines += [
            "| figure | Baton | target | limit | ratio | meets target | notes |",
            "| --- | ---: | ---: | ---: | ---: | :---: | --- |",
        ]
        for figure in transport["figures"].values():
            meets = {True: "yes", False: "**no**", None: "—"}[figure.get("meets_target")]
            value = _fmt(figure.get("value"), figure["unit"]) if figure.get("value") is not None else "n/a"
            lines.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        figure["name"],
                        value,
                        _fmt_target(figure),
                        _fmt_limit(figure),
                        _fmt_ratio(figure.get("ratio")),
                        meets,
                        figure.get("note") or "",
                    )
                )
                + " |"
            )
        raw = transport.get("limits", {})
        measured_limits = [text for text in (_raw_limit_line(k, v) for k, v in raw.items()) if text]
        if measured_limits:
            lines += ["", "Raw limits: " + "; ".join(measured_limits) + "."]
    return "\n".join(lines) + "\n"


def _raw_limit_line(key: str, raw: Mapping[str, Any]) -> str:
    if raw.get("error"):
        return f"ERROR: {raw['error']}"
    if key == "fastapi":
        return (
            f"bare FastAPI {_fmt(raw.get('single_rps'), 'req/s')} single, "
            f"{_fmt(raw.get('batch_leads_per_second'), 'leads/s')} in batches of {raw.get('batch_size')}, "
            f"{_fmt(raw.get('rss_mb'), 'MB')} resident"
        )
    if key == "bus":
        hop = f", hop p50 {_fmt(raw['hop_ms'], 'ms')}" if raw.get("hop_ms") is not None else ""
        return (
            f"{raw.get('name', 'bus')} {_fmt(raw.get('messages_per_second'), 'msg/s')} "
            f"({raw.get('message_bytes')}-byte messages){hop}"
        )
    if key == "commits":
        return (
            f"{raw.get('name', 'commits')} {_fmt(raw.get('commits_per_second'), 'commits/s')}, "
            f"commit p50 {_fmt(raw.get('commit_ms'), 'ms')}"
        )
    return ""


def dumps(results: Mapping[str, Any]) -> str:
    """The JSON report as text."""
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"
