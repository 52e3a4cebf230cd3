"""The benchmark's pure parts: reading wrk's output, limits and ratios, the JSON and markdown reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.alone import applied_events, mix_records, nurture_lead, received_record
from bench.dashboard import EventStreamParser
from bench.intake import intake_figures
from bench.pipeline import accepted_items, hand_raiser, lag_summary
from bench.report import Figure, build_results, percentile, render_markdown, transport_figures, transport_limits
from bench.routing import qualified_record
from bench.webhooks import pool_size, webhook_lead, write_pool
from bench.wrk import parse_wrk_output

from baton.events import LeadQualified, LeadReceived, from_binary
from baton_lead_ingest.verification import new_source_secret, verify

# Captured from `wrk -t2 -c32 -d3s --latency -s bench/leads.lua` against the bare FastAPI app.
WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:18300/v1/leads
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.82ms    3.31ms  84.57ms   96.73%
    Req/Sec     3.48k   328.43     4.33k    86.67%
  Latency Distribution
     50%    4.45ms
     75%    4.65ms
     90%    5.05ms
     99%   10.52ms
  20791 requests in 3.01s, 2.62MB read
Requests/sec:   6916.01
Transfer/sec:      0.87MB
"""
WRK_JSON_LINE = (
    'wrk-json: {"requests":20791,"duration_us":3006212,"statuses":{"202":20791},"items":0,'
    '"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},'
    '"latency_us":{"p50":4446,"p90":5050,"p95":6302,"p99":10520,"max":84575}}\n'
)

# Captured against a path that answers 404: every answer is an error.
WRK_404_OUTPUT = """\
Running 1s test @ http://127.0.0.1:18300/v1/nope
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   428.21us  333.97us   4.30ms   94.96%
    Req/Sec     5.02k   657.22     6.32k    77.27%
  Latency Distribution
     50%  311.00us
     75%  533.00us
     90%  621.00us
     99%    2.17ms
  10998 requests in 1.10s, 1.62MB read
  Non-2xx or 3xx responses: 10998
Requests/sec:   9996.65
Transfer/sec:      1.47MB
wrk-json: {"requests":10998,"duration_us":1100169,"statuses":{"404":10998},"items":0,"errors":{"connect":0,"read":0,\
"write":0,"status":10998,"timeout":0},"latency_us":{"p50":311,"p90":621,"p95":768,"p99":2171,"max":4297}}
"""


def test_wrk_summary_is_read_from_plain_wrk_output() -> None:
    result = parse_wrk_output(WRK_OUTPUT)

    assert result.requests == 20791
    assert result.seconds == pytest.approx(3.01)
    assert result.requests_per_second == pytest.approx(6916.01)
    assert result.latency_ms == pytest.approx({"p50": 4.45, "p75": 4.65, "p90": 5.05, "p99": 10.52})
    assert result.non_2xx == 0 and result.errors == 0
    assert result.ok == 20791


def test_the_scripts_json_line_adds_statuses_and_exact_percentiles() -> None:
    result = parse_wrk_output(WRK_OUTPUT + WRK_JSON_LINE)

    assert result.statuses == {"202": 20791}
    assert result.seconds == pytest.approx(3.006212)
    assert result.latency_ms["p95"] == pytest.approx(6.302)
    assert result.latency_ms["max"] == pytest.approx(84.575)


def test_non_2xx_answers_and_socket_errors_count_as_errors_not_leads() -> None:
    refused = parse_wrk_output(WRK_404_OUTPUT)
    assert refused.non_2xx == 10998 and refused.ok == 0 and refused.errors == 10998
    assert refused.latency_ms["p50"] == pytest.approx(0.311)

    broken = parse_wrk_output(
        WRK_OUTPUT.replace("Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 2\nRequests/sec:")
    )
    assert broken.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert broken.errors == 5


def test_text_that_is_not_a_wrk_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk summary"):
        parse_wrk_output("unable to connect to 127.0.0.1:18301 Connection refused\n")


def test_intake_counts_only_2xx_answers_and_flags_errors() -> None:
    figures = intake_figures(parse_wrk_output(WRK_404_OUTPUT))
    assert figures["leads_per_second"] == 0
    assert figures["errors"] == 10998

    single = intake_figures(parse_wrk_output(WRK_OUTPUT + WRK_JSON_LINE))
    assert single["leads_per_second"] == pytest.approx(20791 / 3.006212)


def test_batch_intake_counts_items_answered_with_a_lead_id() -> None:
    answered = parse_wrk_output(WRK_OUTPUT + WRK_JSON_LINE.replace('"items":0', '"items":2079000'))
    figures = intake_figures(answered, batch_size=100)
    assert figures["items"] == 2079000
    assert figures["refused_items"] == 100
    assert figures["leads_per_second"] == pytest.approx(2079000 / 3.006212)
    assert "100 items refused" in figures["note"]

    silent = intake_figures(parse_wrk_output(WRK_OUTPUT + WRK_JSON_LINE), batch_size=100)
    assert silent["leads_per_second"] == pytest.approx(2079100 / 3.006212)
    assert "no lead_id" in silent["note"]


def test_wrk_reports_its_own_cpu_and_a_signed_pool_that_ran_out_is_an_error() -> None:
    line = WRK_JSON_LINE.replace('"items":0', '"items":0,"exhausted":7,"cpu_us":450000')
    figures = intake_figures(parse_wrk_output(WRK_OUTPUT + line))

    assert figures["load_generator_cores"] == pytest.approx(0.45 / 3.006212, abs=0.001)
    assert "ERRORS: the pool of signed deliveries ran out (7 requests went unsigned)" in figures["note"]
    assert intake_figures(parse_wrk_output(WRK_OUTPUT))["load_generator_cores"] is None


def test_signed_pool_holds_deliveries_the_webhook_verifies_each_a_new_person(tmp_path: Path) -> None:
    secret = new_source_secret("standard-webhooks")
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    files = write_pool(tmp_path / "pool", secret=secret, tag="t1", per_thread=50, threads=2, now=now.timestamp())

    assert [f.name for f in files] == ["pool.1", "pool.2"]
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 100
    ids, emails = set(), set()
    for line in lines:
        webhook_id, timestamp, signature, body = line.split("\t")
        headers = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
        later = now + timedelta(minutes=4)
        verified = verify(
            "standard-webhooks", headers=headers, query={}, body=body.encode(), secrets=[secret], now=later
        )
        assert verified.webhook_id == webhook_id
        ids.add(webhook_id)
        emails.add(json.loads(body)["email"])
    assert len(ids) == len(emails) == 100
    assert set(json.loads(lines[0].split("\t")[3])) == set(webhook_lead("t1", 1, 1)) and "source" not in lines[0]


def test_signed_pool_outlasts_the_bare_endpoint_over_the_whole_run() -> None:
    per_thread = pool_size(ceiling_per_second=7000, seconds=10, threads=2, connections=32)
    assert per_thread * 2 > 7000 * 11
    assert pool_size(ceiling_per_second=None, seconds=2, threads=2, connections=32) > 0


def test_batch_answers_are_counted_per_item() -> None:
    body = {
        "items": [
            {"lead_id": "a", "status": "received", "duplicate": False},
            {"lead_id": None, "status": 422, "error": "not an e-mail address"},
            {"lead_id": "c", "status": 202},
        ]
    }
    assert accepted_items(body) == 2
    assert accepted_items([{"lead_id": "a"}]) == 1
    assert accepted_items({"detail": "Not Found"}) == 0


def test_figure_ratio_and_target_follow_the_direction_that_is_better() -> None:
    rate = Figure("intake_single", "intake", 250.0, "leads/s", "higher", target=1000, limit=5000)
    assert rate.ratio == pytest.approx(0.05)
    assert rate.meets_target is False

    latency = Figure("latency_50", "p99", 120.0, "ms", "lower", target=250, limit=12.0)
    assert latency.ratio == pytest.approx(10.0)
    assert latency.meets_target is True
    assert Figure("x", "x", 250.0, "ms", "lower", target=250).meets_target is False

    missing = Figure("intake_batch", "batch", None, "leads/s", "higher", target=5000, limit=9000)
    assert missing.ratio is None and missing.meets_target is None


def test_percentile_is_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(list(reversed(samples)), 100) == 100
    assert percentile([], 50) is None


KAFKA_LIMITS: dict[str, Any] = {
    "fastapi": {"single_rps": 7000.0, "batch_leads_per_second": 300_000.0, "batch_size": 100, "rss_mb": 50.0},
    "bus": {"name": "raw aiokafka", "messages_per_second": 8000.0, "hop_ms": 4.0, "message_bytes": 723},
    "commits": {"name": "raw asyncpg", "commits_per_second": 7000.0, "commit_ms": 0.5},
}
EMBEDDED_LIMITS: dict[str, Any] = {
    "fastapi": KAFKA_LIMITS["fastapi"],
    "bus": {"name": "raw SQLite appends", "messages_per_second": 40_000.0, "message_bytes": 723},
    "commits": {"name": "raw SQLite", "commits_per_second": 2000.0, "commit_ms": 0.25},
}


def test_limits_come_from_the_raw_parts_and_what_one_lead_costs_them() -> None:
    kafka = transport_limits("kafka", KAFKA_LIMITS)
    assert kafka["intake_single"] == 7000
    assert kafka["intake_batch"] == 300_000
    assert kafka["sustained"] == pytest.approx(8000 / 4)
    assert kafka["latency"] == pytest.approx(3 * 4.0 + 3 * 0.5)
    assert kafka["event_to_kpi"] == pytest.approx(4.0 + 0.5)
    assert kafka["rss"] == 50

    embedded = transport_limits("embedded", EMBEDDED_LIMITS)
    assert embedded["sustained"] == pytest.approx(40_000 / 4)
    assert embedded["latency"] == pytest.approx(3 * 0.25)

    assert transport_limits("kafka", {})["sustained"] is None


MEASURED: dict[str, Any] = {
    "startup_seconds": 4.2,
    "intake_single": {
        "leads_per_second": 90.0,
        "requests": 900,
        "ok": 898,
        "errors": 2,
        "statuses": {"202": 898, "500": 2},
        "latency_ms": {"p50": 300.0, "p99": 900.0},
    },
    "intake_webhook": {
        "leads_per_second": 70.0,
        "requests": 700,
        "ok": 700,
        "errors": 0,
        "statuses": {"202": 700},
        "latency_ms": {"p50": 400.0, "p99": 1100.0},
        "load_generator_cores": 0.03,
        "pool": 30_000,
    },
    "intake_batch": {"available": False, "leads_per_second": None, "note": "not available (answers 404)"},
    "sustained": {
        "leads_per_second": 60.0,
        "leads": 1200,
        "elapsed_seconds": 20.0,
        "completed": True,
        "batch": False,
        "lag": {"stable": True, "max_backlog": 40, "growth_per_second": 0.3, "throttled": False, "cap": 1500},
    },
    "latency_50": {"p50_ms": 80.0, "p95_ms": 150.0, "p99_ms": 200.0, "max_ms": 260.0, "measured": 450},
    "latency_80": {"p50_ms": 120.0, "p95_ms": 400.0, "p99_ms": 700.0, "max_ms": 900.0, "measured": 720},
    "event_to_kpi": {"p50_ms": 30.0, "max_ms": 60.0, "measured": 10, "missing": 0},
    "routed": {
        "leads_per_second": 400.0,
        "leads": 3000,
        "assigned": 2990,
        "missing": 10,
        "completed": False,
        "elapsed_seconds": 7.5,
        "publish_seconds": 0.4,
        "reps": 4,
    },
    "routing_latency": {"p50_ms": 9.0, "p95_ms": 20.0, "p99_ms": 35.0, "max_ms": 40.0, "measured": 2000},
    "scored": {
        "leads_per_second": 600.0,
        "leads": 3000,
        "scored": 3000,
        "missing": 0,
        "completed": True,
        "elapsed_seconds": 5.0,
        "publish_seconds": 0.3,
    },
    "metrics_applied": {
        "events_per_second": 2400.0,
        "events": 18000,
        "published": 12000,
        "by_type": {"lead.assigned": 6000, "lead.qualified": 3000, "lead.received": 3000, "lead.scored": 3000},
        "completed": True,
        "elapsed_seconds": 7.5,
        "publish_seconds": 0.9,
    },
    "event_to_tile": {"p50_ms": 45.0, "max_ms": 80.0, "measured": 10, "missing": 0, "post_p50_ms": 3.0},
    "rss_mb": {"lead-ingest": 110.0, "scoring": 95.0, "handoff": 250.0, "metrics": 96.0},
}


def test_every_figure_has_value_unit_target_limit_and_ratio() -> None:
    figures = {f.key: f for f in transport_figures("kafka", MEASURED, KAFKA_LIMITS)}

    assert list(figures) == [
        "intake_single",
        "intake_webhook",
        "intake_batch",
        "sustained",
        "latency_50",
        "latency_80",
        "event_to_kpi_p50",
        "event_to_kpi_max",
        "routed",
        "routing_p50",
        "routing_p99",
        "scored",
        "metrics_applied",
        "event_to_tile_p50",
        "event_to_tile_max",
        "rss_lead-ingest",
        "rss_scoring",
        "rss_handoff",
        "rss_metrics",
    ]
    assert figures["intake_single"].ratio == pytest.approx(90 / 7000)
    assert "ERRORS: 2 of 900 requests failed" in figures["intake_single"].note
    assert figures["intake_batch"].value is None and "not available" in figures["intake_batch"].note
    webhook = figures["intake_webhook"]
    assert webhook.target is None and webhook.meets_target is None
    assert webhook.limit == 7000 and webhook.limit_of == "bare FastAPI 202 endpoint"
    assert webhook.ratio == pytest.approx(70 / 7000)
    assert webhook.note == "p50 400 ms, p99 1,100 ms per request; wrk 3% of a core"
    assert figures["sustained"].target == 500 and figures["sustained"].meets_target is False
    assert figures["latency_50"].meets_target is True and figures["latency_80"].target is None
    assert figures["rss_handoff"].meets_target is False and figures["rss_scoring"].meets_target is True
    assert figures["routed"].target is None and figures["routed"].ratio == pytest.approx(400 / 4000)
    assert "ERRORS: 10 of 3000 not seen assigned" in figures["routed"].note
    assert figures["routing_p50"].value == 9 and figures["routing_p99"].value == 35
    assert figures["routing_p99"].ratio == pytest.approx(35 / (2 * 4.0 + 0.5))


def test_signed_webhook_intake_that_failed_says_why_and_leaves_the_other_rows_alone() -> None:
    failed = {**MEASURED, "intake_webhook": {"available": False, "error": "RuntimeError: could not create a source"}}
    figures = {f.key: f for f in transport_figures("embedded", failed, EMBEDDED_LIMITS)}

    assert figures["intake_webhook"].value is None
    assert figures["intake_webhook"].note == "ERROR: RuntimeError: could not create a source"
    assert figures["intake_single"].value == 90
    assert "intake_webhook" in {f.key for f in transport_figures("embedded", {}, EMBEDDED_LIMITS)}


def test_routing_alone_is_bounded_by_the_two_events_and_the_steps_one_routed_mql_takes() -> None:
    kafka = transport_limits("kafka", KAFKA_LIMITS)
    assert kafka["routed"] == pytest.approx(8000 / 2)
    assert kafka["routing_latency"] == pytest.approx(2 * 4.0 + 0.5)

    embedded = transport_limits("embedded", EMBEDDED_LIMITS)
    assert embedded["routed"] == pytest.approx(40_000 / 2)
    assert embedded["routing_latency"] == pytest.approx(0.25)


def test_routing_latency_says_why_it_is_missing_when_the_saturated_phase_failed() -> None:
    failed = {**MEASURED, "routed": {"error": "KafkaConnectionError: unreachable"}}
    del failed["routing_latency"]
    figures = {f.key: f for f in transport_figures("kafka", failed, KAFKA_LIMITS)}

    assert figures["routed"].value is None and figures["routed"].note == "ERROR: KafkaConnectionError: unreachable"
    assert figures["routing_p99"].value is None and "not measured" in figures["routing_p99"].note


def test_a_routed_mql_is_a_qualified_event_on_leads_scored_carrying_the_leads_routing_attributes() -> None:
    record = qualified_record("lead-1", hand_raiser("t", 3))

    event = from_binary(record.headers, record.value)
    assert record.topic == "leads.scored" and record.key == "lead-1"
    assert event.type == "baton.lead.qualified.v1" and event.source == "/baton/scoring"
    qualified = event.payload()
    assert isinstance(qualified, LeadQualified)
    assert qualified.lead.country == hand_raiser("t", 3)["country"]
    assert qualified.lead.email == hand_raiser("t", 3)["email"]


def test_json_report_holds_machine_limits_and_figures_per_transport() -> None:
    results = build_results(
        machine={"cores": 2, "memory_gb": 23.5, "cpu": "Xeon", "kafka": "4.1.1", "postgresql": "15.18"},
        limits={"kafka": KAFKA_LIMITS, "embedded": EMBEDDED_LIMITS},
        measured={"kafka": MEASURED, "embedded": {"error": "embedded system: exited while starting"}},
        mode="full",
        duration_seconds=412.34,
    )
    text = json.dumps(results)
    assert json.loads(text) == results

    kafka = results["transports"]["kafka"]
    assert kafka["name"] == "Kafka + PostgreSQL"
    single = kafka["figures"]["intake_single"]
    assert {"value", "unit", "target", "target_op", "limit", "limit_of", "ratio", "meets_target"} <= set(single)
    assert single["target_op"] == ">=" and kafka["figures"]["latency_50"]["target_op"] == "<"
    assert kafka["limits"]["bus"]["messages_per_second"] == 8000
    assert results["transports"]["embedded"]["error"].startswith("embedded system")
    assert results["targets"]["sustained"] == 500
    assert results["duration_seconds"] == 412.3


def test_markdown_report_has_one_table_per_transport_with_a_row_per_figure() -> None:
    results = build_results(
        machine={"date": "2026-01-01T00:00:00+00:00", "cores": 2, "kafka": "4.1.1"},
        limits={"embedded": EMBEDDED_LIMITS, "kafka": KAFKA_LIMITS},
        measured={"embedded": {"error": "embedded system: exited while starting"}, "kafka": MEASURED},
        mode="quick",
        duration_seconds=30,
    )
    markdown = render_markdown(results)

    assert markdown.count("| figure | Baton | target | limit | ratio | meets target | notes |") == 2
    assert "## embedded log + SQLite" in markdown and "## Kafka + PostgreSQL" in markdown
    assert "**ERROR:** embedded system: exited while starting" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| intake, single") and "90.0" in line)
    assert "≥ 1,000 leads/s" in row and "7,000 leads/s (bare FastAPI 202 endpoint)" in row and "**no**" in row
    batch = next(line for line in markdown.splitlines() if "leads:batch" in line and "90.0" not in line)
    assert "| n/a |" in batch
    webhook = next(line for line in markdown.splitlines() if line.startswith("| intake, signed") and "70.0" in line)
    assert "| 70.0 leads/s | — | 7,000 leads/s (bare FastAPI 202 endpoint) | 0.01 | — |" in webhook
    assert "Kafka 4.1.1" in markdown and "PostgreSQL" not in markdown.splitlines()[2]
    for line in markdown.splitlines():
        if line.startswith("| ") and "---" not in line:
            assert line.count(" | ") == 6, line


def test_lag_is_stable_when_the_backlog_stops_growing() -> None:
    level = [(t / 2, int(t * 30), int(t * 30) - 50) for t in range(1, 41)]
    stable = lag_summary(level, post_seconds=20, cap=1500, throttled=False)
    assert stable["stable"] is True and stable["max_backlog"] == 50

    growing = [(t / 2, int(t * 50), int(t * 30)) for t in range(1, 41)]
    summary = lag_summary(growing, post_seconds=20, cap=1500, throttled=False)
    assert summary["stable"] is False
    assert summary["growth_per_second"] == pytest.approx(40, rel=0.05)


def test_scoring_alone_metrics_alone_and_the_dashboard_tile_are_rows_without_a_target() -> None:
    figures = {f.key: f for f in transport_figures("kafka", MEASURED, KAFKA_LIMITS)}

    scored = figures["scored"]
    assert scored.value == 600 and scored.unit == "leads/s"
    assert scored.target is None and scored.meets_target is None
    assert scored.limit == pytest.approx(8000 / 2) and scored.limit_of == "raw Kafka ÷ 2 events per scored lead"
    assert scored.ratio == pytest.approx(600 / 4000)
    assert "3000 nurture leads published onto leads.ingested in 300 ms" in scored.note

    applied = figures["metrics_applied"]
    assert applied.value == 2400 and applied.unit == "events/s" and applied.target is None
    assert applied.limit == 8000 and applied.ratio == pytest.approx(2400 / 8000)
    assert "12000 events published" in applied.note and "18000 applied in 7.5 s" in applied.note
    assert "ERRORS" not in applied.note

    for stat, value in (("p50", 45), ("max", 80)):
        tile = figures[f"event_to_tile_{stat}"]
        assert tile.value == value and tile.unit == "ms" and tile.target is None and tile.meets_target is None
        assert tile.limit == pytest.approx(4.0 + 0.5)
        assert tile.note.startswith("10 leads posted one at a time")

    embedded = transport_limits("embedded", EMBEDDED_LIMITS)
    assert embedded["scored"] == pytest.approx(40_000 / 2)
    assert embedded["metrics_applied"] == pytest.approx(40_000)
    assert embedded["event_to_tile"] == pytest.approx(0.25)


def test_rows_without_a_target_show_a_dash_for_target_and_verdict_in_markdown() -> None:
    results = build_results(
        machine={}, limits={"kafka": KAFKA_LIMITS}, measured={"kafka": MEASURED}, mode="quick", duration_seconds=1
    )
    lines = render_markdown(results).splitlines()

    scored = next(line for line in lines if line.startswith("| scoring alone"))
    assert "| 600 leads/s | — | 4,000 leads/s (raw Kafka ÷ 2 events per scored lead) | 0.15 | — |" in scored
    applied = next(line for line in lines if line.startswith("| metrics alone"))
    assert "| 2,400 events/s | — | 8,000 events/s (raw Kafka, 1 message per event) | 0.3 | — |" in applied
    tile = next(line for line in lines if line.startswith("| event → dashboard tile") and "p50" in line)
    assert "| 45.0 ms | — | 4.5 ms (raw Kafka + PostgreSQL floor) | 10 | — |" in tile


def test_the_new_phases_that_failed_or_timed_out_say_so_in_their_own_rows() -> None:
    failed = {
        **MEASURED,
        "scored": {"error": "KafkaConnectionError: unreachable"},
        "metrics_applied": {**MEASURED["metrics_applied"], "completed": False},
        "event_to_tile": {"p50_ms": 45.0, "max_ms": 80.0, "measured": 8, "missing": 2},
    }
    figures = {f.key: f for f in transport_figures("embedded", failed, EMBEDDED_LIMITS)}

    assert figures["scored"].value is None and figures["scored"].note == "ERROR: KafkaConnectionError: unreachable"
    assert "ERRORS: not every published event was applied" in figures["metrics_applied"].note
    assert "ERRORS: 2 never reached the stream" in figures["event_to_tile_max"].note
    assert figures["routed"].value == 400


def test_scoring_alone_publishes_nurture_leads_as_lead_ingest_would() -> None:
    record = received_record("lead-1", nurture_lead("t", 5))

    event = from_binary(record.headers, record.value)
    assert record.topic == "leads.ingested" and record.key == "lead-1"
    assert event.type == "baton.lead.received.v1" and event.source == "/baton/lead-ingest"
    received = event.payload()
    assert isinstance(received, LeadReceived)
    assert received.activities == [] and received.title == "Marketing Manager"
    assert nurture_lead("t", 4)["email"].split("@")[1] == nurture_lead("t", 7)["email"].split("@")[1]
    assert nurture_lead("t", 4)["email"].split("@")[1] != nurture_lead("t", 8)["email"].split("@")[1]


def test_metrics_alone_publishes_a_leads_life_onto_the_three_topics() -> None:
    records = mix_records("lead-1", nurture_lead("t", 1), rep_id="bench-rep-1")

    events = [from_binary(r.headers, r.value) for r in records]
    assert [r.topic for r in records] == ["leads.ingested", "leads.scored", "leads.handoff", "leads.handoff"]
    assert [e.type.split(".")[2] for e in events] == ["received", "qualified", "assigned", "status_changed"]
    assert {e.subject for e in events} == {"lead-1"}
    assigned, accepted = events[2].data, events[3].data
    assert assigned["assignment_id"] == accepted["assignment_id"] and accepted["status"] == "accepted"


def test_applied_events_are_read_per_type_from_the_groups_counter() -> None:
    exposition = """\
# HELP baton_consumer_events_total Events a consumer group took.
# TYPE baton_consumer_events_total counter
baton_consumer_events_total{group="metrics",outcome="applied",type="baton.lead.received.v1"} 12.0
baton_consumer_events_total{group="metrics",outcome="duplicate",type="baton.lead.received.v1"} 3.0
baton_consumer_events_total{group="metrics",outcome="applied",type="baton.lead.scored.v1"} 7.0
baton_consumer_events_total{group="scoring",outcome="applied",type="baton.lead.received.v1"} 40.0
baton_consumer_events_created{group="metrics",outcome="applied",type="baton.lead.received.v1"} 1.7e9
"""
    assert applied_events(exposition) == {"baton.lead.received.v1": 12, "baton.lead.scored.v1": 7}
    assert applied_events(exposition, "scoring") == {"baton.lead.received.v1": 40}


def test_stream_events_are_read_once_their_blank_line_arrives() -> None:
    parser = EventStreamParser()
    lines = [": ping", "event: kpis", 'data: {"totals":', "data: {}}", "retry: 3000", "", "", "data: x", ""]

    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == [("kpis", '{"totals":\n{}}'), ("message", "x")]
