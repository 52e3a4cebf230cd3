"""Vendor webhooks and erasure on the real Kafka and PostgreSQL, the four services running as processes.

Each vendor's sample, posted and signed as that vendor sends it, becomes ``lead.received`` on the Kafka topic
and, once it qualifies, an assignment. A lead erased at lead-ingest leaves none of the person's data in any
service's database, while the anonymous counts stay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from baton.events import LEADS_INGESTED, CloudEvent
from tests.conftest import POSTGRES_URL, SERVICE_DATABASES
from tests.e2e.test_walking_skeleton import all_assignments, eventually
from tests.handoff_process import TopicReader
from tests.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VENDORS = Path(__file__).parent.parent / "fixtures" / "vendors"
RECEIVED = "baton.lead.received.v1"
FORM = "application/x-www-form-urlencoded"
REP = "rep-vendors"
WITHIN = 60.0


@dataclass(frozen=True)
class Vendor:
    """A preset, how its vendor proves a post is its own, its sample, and the people the sample carries."""

    preset: str
    verification: str
    sample: str
    emails: tuple[str, ...]

    @property
    def source(self) -> str:
        return f"from-{self.preset}"

    @property
    def content_type(self) -> str:
        return FORM if self.sample.endswith(".txt") else "application/json"


VENDOR_SAMPLES = (
    Vendor("marketo", "url-token", "marketo.json", ("dana.whitfield@northwind.example",)),
    Vendor("hubspot-forms", "standard-webhooks", "hubspot-forms.json", ("priya.raman@contoso.example",)),
    Vendor("meta-lead-ads", "meta", "meta-lead-ads.json", ("m.okafor@fabrikam.example",)),
    Vendor("linkedin-lead-gen", "standard-webhooks", "linkedin-lead-gen.json", ("sofia.lindqvist@adatum.example",)),
    Vendor("typeform", "typeform", "typeform.json", ("lucas.moreau@litware.example",)),
    Vendor("unbounce", "url-token", "unbounce.txt", ("ana.souza@example.com",)),
    Vendor("salesforce-web-to-lead", "url-token", "salesforce-web-to-lead.txt", ("grace.hopper@example.org",)),
    Vendor("pardot", "url-token", "pardot.txt", ("k.tanaka@example.jp",)),
    Vendor(
        "mautic",
        "standard-webhooks",
        "mautic.json",
        ("lena.fischer@example.de", "marco.rossi@example.it", "priya.nair@example.in"),
    ),
)
# None of the samples reaches the default model's MQL bar by itself (they carry no company size, and the
# best title is worth 30 of the 40 points), so these people later ask for a demo, as marketing automation
# reports it: a hand-raiser qualifies at once. The others stay in nurture and are never assigned.
ASKS_FOR_A_DEMO = ("m.okafor@fabrikam.example", "sofia.lindqvist@adatum.example", "grace.hopper@example.org")


@pytest.fixture(scope="module")
def system(module_kafka_system: RunningSystem) -> Iterator[RunningSystem]:
    """The running system with one rep to hand MQLs to."""
    rep = {"rep_id": REP, "name": "Vendor Leads", "team": "inbound", "capacity": 1000}
    response = httpx.post(
        f"{module_kafka_system.urls['handoff']}/v1/reps", json=rep, headers=module_kafka_system.token("admin")
    )
    assert response.status_code == 201, response.text
    yield module_kafka_system


def system_name(system: RunningSystem) -> str:
    """The name the system's databases and topics are named after."""
    return system.env["BATON_KAFKA_TOPIC_PREFIX"].removesuffix(".")


def signed_as_vendor(vendor: Vendor, secret: str, body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """The headers and query string a vendor's post carries to prove it comes from the source."""
    headers = {"content-type": vendor.content_type}
    if vendor.verification == "url-token":
        return headers, {"token": secret}
    if vendor.verification == "typeform":
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return {**headers, "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode()}, {}
    if vendor.verification == "meta":
        digest_hex = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {**headers, "X-Hub-Signature-256": "sha256=" + digest_hex}, {}
    webhook_id, now = "msg_" + secrets.token_hex(8), datetime.now(UTC)
    return {
        **headers,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
    }, {}


async def post_vendor_sample(client: httpx.AsyncClient, system: RunningSystem, vendor: Vendor) -> list[str]:
    """Creates the vendor's source, posts its sample signed as the vendor would, and returns the leads it made."""
    created = await client.post(
        f"{system.urls['lead-ingest']}/v1/sources",
        json={"name": vendor.source, "preset": vendor.preset, "verification": vendor.verification},
        headers=system.token("admin"),
    )
    assert created.status_code == 201, created.text
    body = (VENDORS / vendor.sample).read_bytes().strip()
    headers, query = signed_as_vendor(vendor, created.json()["secret"], body)
    response = await client.post(
        f"{system.urls['lead-ingest']}/v1/sources/{vendor.source}/leads", content=body, headers=headers, params=query
    )
    assert response.status_code in (200, 202), f"{vendor.preset}: {response.status_code} {response.text}"
    answer = response.json()
    items = answer["items"] if "items" in answer else [answer]
    assert [item["status"] for item in items] == ([202] * len(items) if "items" in answer else ["received"]), (
        f"{vendor.preset}: {answer}"
    )
    assert all(item["duplicate"] is False for item in items), f"{vendor.preset}: {answer}"
    return [item["lead_id"] for item in items]


async def test_each_vendor_sample_becomes_a_lead_on_kafka_and_those_that_qualify_are_assigned(
    system: RunningSystem,
) -> None:
    admin = system.token("admin")
    async with httpx.AsyncClient(timeout=30) as client:
        posted = {vendor: await post_vendor_sample(client, system, vendor) for vendor in VENDOR_SAMPLES}

        # The event on the topic, read from its beginning as any consumer would read it.
        expected = {
            lead_id: (vendor.source, email)
            for vendor, lead_ids in posted.items()
            for lead_id, email in zip(lead_ids, vendor.emails, strict=True)
        }
        async with TopicReader(f"{system.env['BATON_KAFKA_TOPIC_PREFIX']}{LEADS_INGESTED}") as topic:

            async def every_lead_received() -> dict[str, CloudEvent] | None:
                await topic.more()
                seen = {event.subject: event for event in topic.events if event.type == RECEIVED}
                return seen if set(expected) <= set(seen) else None

            received = await eventually(every_lead_received, what="lead.received of every sample", within=WITHIN)
        on_topic = {
            lead_id: (event.data["source"], event.data["email"].lower())
            for lead_id, event in received.items()
            if lead_id in expected
        }
        assert on_topic == expected
        for lead_id, (source, email) in expected.items():
            held = await client.get(f"{system.urls['lead-ingest']}/v1/leads/{lead_id}", headers=admin)
            assert held.status_code == 200, held.text
            assert (held.json()["source"], held.json()["email"].lower()) == (source, email)

        by_email = {email: lead_id for lead_id, (_, email) in expected.items()}
        for email in ASKS_FOR_A_DEMO:
            asked = await client.post(
                f"{system.urls['lead-ingest']}/v1/activities",
                json={"email": email, "type": "demo_request", "occurred_at": datetime.now(UTC).isoformat()},
                headers=system.token("leads:write"),
            )
            assert asked.status_code == 202, asked.text

        async def scores() -> dict[str, dict[str, Any]] | None:
            found = {}
            for lead_id in expected:
                response = await client.get(f"{system.urls['scoring']}/v1/leads/{lead_id}/score", headers=admin)
                if response.status_code != 200:
                    return None
                found[lead_id] = response.json()
            mqls = {lead_id for lead_id, score in found.items() if score["status"] == "mql"}
            return found if mqls >= {by_email[email] for email in ASKS_FOR_A_DEMO} else None

        scored = await eventually(scores, what="every sample lead scored, the demo requests as MQLs", within=WITHIN)
        qualified = {by_email[email] for email in ASKS_FOR_A_DEMO}
        assert {lead_id for lead_id, score in scored.items() if score["status"] == "mql"} == qualified

        async def assigned() -> list[dict[str, Any]] | None:
            items = [a for a in await all_assignments(client, system, **admin) if a["lead_id"] in expected]
            return items if {a["lead_id"] for a in items} >= qualified else None

        assignments = await eventually(assigned, what="every qualified vendor lead assigned", within=WITHIN)
        assert sorted(a["lead_id"] for a in assignments) == sorted(qualified)
        assert {a["rep_id"] for a in assignments} == {REP}
        assert {a["lead"]["source"] for a in assignments} == {expected[lead_id][0] for lead_id in qualified}


# Erasure


PERSON = {"first_name": "Ottoline", "last_name": "Quarrington", "phone": "+44 20 7946 0321"}
SERVICE_OF_DATABASE = dict(zip(SERVICE_DATABASES, ("lead-ingest", "scoring", "handoff", "metrics"), strict=True))
_PHONE_PUNCTUATION = re.compile(r"[\s()+.\-]")


async def what_each_database_holds(system: RunningSystem, email: str) -> dict[str, set[tuple[str, str]]]:
    """Per service, the (table, personal item) pairs of its PostgreSQL database: which table has a row holding the
    person's e-mail, first name, last name or phone (in any punctuation), case-insensitively.

    Every table is read, the messaging ones included: on Kafka the outbox only holds events until the relay has
    published them (it deletes them then), and the inbox holds consumer groups and event ids.
    """
    needles = {
        "email": email.lower(),
        "first_name": PERSON["first_name"].lower(),
        "last_name": PERSON["last_name"].lower(),
    }
    phone_digits = _PHONE_PUNCTUATION.sub("", PERSON["phone"])
    found: dict[str, set[tuple[str, str]]] = {}
    for database in SERVICE_DATABASES:
        conn = await asyncpg.connect(f"{POSTGRES_URL}/{system_name(system)}_{database}")
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
            assert tables, f"no tables in {database}"
            holding: set[tuple[str, str]] = set()
            for (table,) in tables:
                for (row,) in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{table}" AS t'):
                    text = row.lower()
                    holding |= {(table, item) for item, needle in needles.items() if needle in text}
                    if phone_digits in _PHONE_PUNCTUATION.sub("", text):
                        holding.add((table, "phone"))
            found[SERVICE_OF_DATABASE[database]] = holding
        finally:
            await conn.close()
    return found


async def test_an_erased_lead_leaves_nothing_personal_in_any_database_and_the_counts_stay(
    system: RunningSystem,
) -> None:
    admin, run = system.token("admin"), secrets.token_hex(4)
    # Neither the address nor the company quotes the names, so that each item is found on its own.
    email, source = f"oq.{run}@northern-looms.example", f"erasure-{run}"
    lead: dict[str, Any] = {**PERSON, "email": email, "source": source, "company": "Northern Looms"}
    lead |= {"title": "Engineer", "activities": [{"type": "demo_request"}]}
    async with httpx.AsyncClient(timeout=30) as client:
        posted = await client.post(
            f"{system.urls['lead-ingest']}/v1/leads", json=lead, headers=system.token("leads:write")
        )
        assert posted.status_code == 202, posted.text
        lead_id = posted.json()["lead_id"]

        async def assignment() -> dict[str, Any] | None:
            mine = [a for a in await all_assignments(client, system, **admin) if a["lead_id"] == lead_id]
            return mine[0] if mine else None

        assigned = await eventually(assignment, what="the lead's assignment", within=WITHIN)
        assert assigned["lead"]["email"] == email and assigned["status"] == "assigned"

        async def source_totals() -> dict[str, Any] | None:
            response = await client.get(
                f"{system.urls['metrics']}/v1/kpis", params={"group_by": "source"}, headers=admin
            )
            assert response.status_code == 200, response.text
            groups = {group["key"]: group["totals"] for group in response.json()["groups"]}
            return groups.get(source)

        async def counted() -> dict[str, Any] | None:
            totals = await source_totals()
            return totals if totals and (totals["received"], totals["mql"], totals["assigned"]) == (1, 1, 1) else None

        before = await eventually(counted, what="metrics counting the lead received, MQL and assigned", within=WITHIN)
        # The scan sees every item of the person where each service keeps them: finding none later means something.
        held_before = await what_each_database_holds(system, email)
        for service in ("lead-ingest", "scoring", "handoff"):
            assert {item for _, item in held_before[service]} == {*PERSON, "email"}, held_before

        erased = await client.post(f"{system.urls['lead-ingest']}/v1/leads/{lead_id}:erase", headers=admin)
        assert erased.status_code == 202, erased.text
        assert erased.json() == {"lead_id": lead_id, "status": "erased"}
        gone = await client.get(f"{system.urls['lead-ingest']}/v1/leads/{lead_id}", headers=admin)
        assert gone.status_code == 404, gone.text

        async def scoring_forgot() -> bool:
            response = await client.get(f"{system.urls['scoring']}/v1/leads/{lead_id}/score", headers=admin)
            return response.status_code == 404

        await eventually(scoring_forgot, what="scoring to forget the lead's score", within=WITHIN)

        async def handoff_forgot() -> dict[str, Any] | None:
            response = await client.get(
                f"{system.urls['handoff']}/v1/assignments/{assigned['assignment_id']}", headers=admin
            )
            assert response.status_code == 200, response.text
            return response.json() if email not in response.text else None

        anonymous = await eventually(handoff_forgot, what="handoff to anonymise the assignment", within=WITHIN)
        # The assignment stays, anonymous: the lead is gone, so its open assignment is closed (handoff/erasure.py).
        assert (anonymous["lead_id"], anonymous["rep_id"], anonymous["status"]) == (lead_id, REP, "lost")
        assert anonymous["lead"]["source"] == source
        for value in (*PERSON.values(), email):
            assert value not in json.dumps(anonymous), value

        # Metrics counts the closing apart from sales' verdicts: it is `erased`, not `lost`.
        async def metrics_counted_the_closing() -> dict[str, Any] | None:
            totals = await source_totals()
            return totals if totals and totals["erased"] == before["erased"] + 1 else None

        after = await eventually(
            metrics_counted_the_closing, what="metrics counting the closed assignment", within=WITHIN
        )
        assert after == {**before, "erased": before["erased"] + 1}

        assert await what_each_database_holds(system, email) == {
            "lead-ingest": set(),
            "scoring": set(),
            "handoff": set(),
            "metrics": set(),
        }

        again = await client.post(
            f"{system.urls['lead-ingest']}/v1/leads", json=lead, headers=system.token("leads:write")
        )
        assert again.status_code == 202, again.text
        assert again.json()["duplicate"] is False and again.json()["lead_id"] != lead_id
