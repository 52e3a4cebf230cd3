"""lead-ingest's Prometheus metrics: what became of the leads each source sent, and what was refused."""

from __future__ import annotations

import json

from prometheus_client import Counter

from baton_lead_ingest.service import Answer

CANONICAL_API = "api"
"""The ``source`` label of leads posted to the canonical API rather than to a source's webhook."""

LEADS = Counter(
    "baton_ingest_leads_total",
    "Leads taken, by source (a webhook source's name, or api) and outcome: accepted (a new lead), merged "
    "(into a known lead) or quarantined.",
    ["source", "outcome"],
)
REFUSED = Counter(
    "baton_ingest_refused_total",
    "Requests or batch items refused and not kept, by source and reason (invalid, rate_limited, unverified).",
    ["source", "reason"],
)
VERIFICATION_FAILURES = Counter(
    "baton_ingest_verification_failures_total", "Webhook requests that failed verification, by source.", ["source"]
)


def count_answer(source: str, answer: Answer) -> None:
    """Counts the leads a first answer accepted, merged or refused; an answer given again counts nothing."""
    if answer.repeated or answer.status >= 400:
        return
    body = json.loads(answer.body)
    items = body["items"] if "items" in body else [{**body, "status": 202}]
    merged = sum(1 for item in items if item["status"] == 202 and item.get("duplicate"))
    accepted = sum(1 for item in items if item["status"] == 202) - merged
    invalid = len(items) - accepted - merged
    if accepted:
        LEADS.labels(source, "accepted").inc(accepted)
    if merged:
        LEADS.labels(source, "merged").inc(merged)
    if invalid:
        REFUSED.labels(source, "invalid").inc(invalid)
