"""Baton's intake under wrk: ``POST /v1/leads`` one lead per request, signed webhook deliveries (``bench.webhooks``),
and ``POST /v1/leads:batch``."""

from __future__ import annotations

from typing import Any

from bench.wrk import WrkResult


def intake_figures(result: WrkResult, *, batch_size: int = 0) -> dict[str, Any]:
    """Leads per second and the error count of one wrk run; only 2xx answers count as leads taken.

    Args:
        result: The wrk run.
        batch_size: Leads per request, 0 for single posts.

    Returns:
        ``leads_per_second``, ``requests``, ``ok``, ``errors``, ``statuses``, ``latency_ms``,
        ``load_generator_cores`` (wrk's CPU seconds per second of the run), ``note`` when something went wrong,
        and for batches ``batch_size``, ``items`` (leads answered with a ``lead_id``) and ``refused_items``.
    """
    seconds = result.seconds or 1.0
    figures: dict[str, Any] = {
        "available": True,
        "requests": result.requests,
        "ok": result.ok,
        "errors": result.errors,
        "statuses": dict(result.statuses),
        "socket_errors": dict(result.socket_errors),
        "seconds": round(seconds, 2),
        "requests_per_second": result.ok / seconds,
        "latency_ms": dict(result.latency_ms),
        "load_generator_cores": result.load_generator_cores,
    }
    notes = []
    if result.exhausted:
        notes.append(f"ERRORS: the pool of signed deliveries ran out ({result.exhausted} requests went unsigned)")
    if not batch_size:
        figures["leads_per_second"] = result.ok / seconds
        if notes:
            figures["note"] = "; ".join(notes)
        return figures
    sent_items = result.ok * batch_size
    items = result.items if result.items else None
    figures["batch_size"] = batch_size
    figures["items"] = items if items is not None else sent_items
    figures["refused_items"] = max(sent_items - items, 0) if items is not None else None
    figures["leads_per_second"] = figures["items"] / seconds
    if items is None and result.ok:
        notes.append("answers carried no lead_id: counted as 2xx requests × batch size")
    if figures["refused_items"]:
        notes.append(f"ERRORS: {figures['refused_items']} items refused inside 2xx answers")
    if notes:
        figures["note"] = "; ".join(notes)
    return figures
