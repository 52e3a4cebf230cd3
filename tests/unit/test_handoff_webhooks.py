"""Each team's outbound webhook: the admin API, queueing deliveries from events, and sending them to a real receiver.

The helpers here also drive deliveries on PostgreSQL in tests/integration/test_handoff_webhooks_postgresql.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from standardwebhooks import Webhook
from starlette.types import Receive, Scope, Send

from baton.consumer import Incoming
from baton.db import migrate
from baton.events import EventData, LeadAssigned, LeadRecycled, LeadStatusChanged, SlaBreached, new_id
from baton_handoff import webhooks
from baton_handoff.app import create_app
from baton_handoff.audit import AuditEntry
from baton_handoff.settings import HandoffSettings
from baton_handoff.webhooks import WebhookDelivery
from tests.unit.conftest import assert_problem
from tests.unit.test_handoff_api import ANA, Handoff, qualified, running_handoff

EMEA_LEAD = {"scopes": ("assignments:read",), "team": "emea"}
WAIT_SECONDS = 10.0


class SteppingClock:
    """A clock that stands still until the test moves it; it starts at the real time, as signatures are checked."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        self.now = moment


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A CRM's webhook receiver on a real socket: records each request, answers the statuses given, then 200."""

    answers: list[int]
    hold_until: int = 0
    """Each request waits for an answer until this many have arrived: they were all in flight at once."""
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append(Received({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        self._arrived.set()
        if len(self.requests) >= self.hold_until:
            self._enough.set()
        await self._enough.wait()
        answer = self.answers.pop(0) if self.answers else 200
        await send({"type": "http.response.start", "status": answer, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int) -> None:
        """Returns once ``count`` requests have arrived."""
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def ids(self) -> list[str]:
        return [request.headers["webhook-id"] for request in self.requests]


@asynccontextmanager
async def running_receiver(*answers: int, hold_until: int = 0) -> AsyncIterator[Receiver]:
    """A receiver served by uvicorn on 127.0.0.1 at a free port; the socket listens before the server starts."""
    receiver = Receiver(answers=list(answers), hold_until=hold_until)
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(128)
    receiver.url = f"http://127.0.0.1:{listening.getsockname()[1]}/hooks/baton"
    server = uvicorn.Server(uvicorn.Config(receiver, lifespan="off", log_level="warning", access_log=False, ws="none"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield receiver
    finally:
        server.should_exit = True
        await serving
        listening.close()


@asynccontextmanager
async def handoff_at_rest(settings: HandoffSettings, clock: SteppingClock) -> AsyncIterator[Handoff]:
    """handoff's API on a migrated database with nothing running behind it: the test applies events and sends."""
    app = create_app(settings, clock=clock)
    runtime = app.state.runtime
    await migrate(runtime.engine, runtime.spec.migrations)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://handoff") as client:
            yield Handoff(client=client, runtime=runtime)
    finally:
        await runtime.engine.dispose()


def assigned(*, team: str | None = "emea", lead_id: str | None = None) -> LeadAssigned:
    return LeadAssigned(
        lead_id=lead_id or new_id(),
        assignment_id=new_id(),
        rep_id="rep-ana",
        team=team,
        rule="default",
        attempt=1,
        accept_due_at=datetime(2030, 6, 3, 10, tzinfo=UTC),
        touch_due_at=datetime(2030, 6, 4, 9, tzinfo=UTC),
    )


def status_changed(*, team: str = "emea") -> LeadStatusChanged:
    return LeadStatusChanged(
        lead_id=new_id(),
        assignment_id=new_id(),
        rep_id="rep-ana",
        team=team,
        status="accepted",
        occurred_at=datetime(2030, 6, 3, 9, 30, tzinfo=UTC),
    )


def incoming(data: EventData, at: datetime) -> Incoming[EventData]:
    return Incoming(id=new_id(), source="/baton/handoff", time=at, data=data, now=at)


async def apply(handoff: Handoff, *events: Incoming[EventData]) -> None:
    """Applies events one after another in one transaction, as the handoff-webhooks consumer applies a batch."""
    table = handoff.runtime.spec.consumers["handoff-webhooks"]
    async with handoff.runtime.sessions() as session, session.begin():
        for event in events:
            await table[event.data.event_type](event, session)


async def put_webhook(handoff: Handoff, team: str = "emea", **body: Any) -> httpx.Response:
    return await handoff.client.put(f"/v1/webhooks/{team}", json=body, headers=handoff.admin)


async def create_webhook(handoff: Handoff, url: str, team: str = "emea", **body: Any) -> str:
    """Creates a team's webhook; returns its secret."""
    created = await put_webhook(handoff, team, url=url, **body)
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret


async def deliveries(handoff: Handoff, team: str = "emea") -> list[WebhookDelivery]:
    async with handoff.runtime.sessions() as session:
        found = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.team == team).order_by(WebhookDelivery.seq)
        )
        return list(found)


async def deliver(handoff: Handoff, clock: SteppingClock) -> int:
    """One pass of the delivery worker at the clock's time."""
    async with webhooks.delivery_client() as client:
        return await webhooks.deliver_due(handoff.runtime.sessions, client=client, clock=clock)


@pytest.fixture
def settings(tmp_path: Path) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
async def handoff(settings: HandoffSettings, clock: SteppingClock) -> AsyncIterator[Handoff]:
    async with handoff_at_rest(settings, clock) as service:
        yield service


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


# The endpoint (admin)


async def test_creating_a_webhook_answers_its_secret_once_and_reading_it_never_does(handoff: Handoff) -> None:
    created = await put_webhook(handoff, url="https://crm.example.com/hooks")

    assert created.status_code == 201
    assert created.json()["secret"].startswith("whsec_")
    assert created.json()["events"] == list(webhooks.EVENT_TYPES)
    assert created.json()["enabled"] is True
    read = await handoff.client.get("/v1/webhooks/emea", headers=handoff.admin)
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert read.json()["url"] == "https://crm.example.com/hooks"


async def test_putting_a_webhook_again_replaces_it_without_answering_or_changing_its_secret(
    handoff: Handoff, clock: SteppingClock, receiver: Receiver
) -> None:
    secret = await create_webhook(handoff, "https://old.example.com/hooks")

    replaced = await put_webhook(handoff, url=receiver.url, events=[LeadAssigned.event_type])
    await apply(handoff, incoming(assigned(), clock.now))
    await deliver(handoff, clock)

    assert replaced.status_code == 200
    assert "secret" not in replaced.json()
    assert replaced.json()["events"] == [LeadAssigned.event_type]
    await receiver.wait_for(1)
    Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://crm.example.com/hooks",
        "https://user:password@crm.example.com/hooks",
        "https://token@crm.example.com/hooks",
        "https:///hooks",
        "crm.example.com/hooks",
        "https://crm.example.com/" + "a" * 2048,
        "https://crm.example.com/ho oks",
        "https://crm.example.com:99999/hooks",
        "",
    ],
)
async def test_a_webhook_url_must_be_a_bounded_http_url_without_credentials(handoff: Handoff, url: str) -> None:
    refused = await put_webhook(handoff, url=url)

    body = assert_problem(refused, 422)
    assert [error["loc"] for error in body["errors"]] == [["body", "url"]]
    assert (await handoff.client.get("/v1/webhooks/emea", headers=handoff.admin)).status_code == 404


@pytest.mark.parametrize("events", [["baton.lead.qualified.v1"], [], ["lead.assigned"]])
async def test_a_webhook_subscribes_only_to_handoff_event_types(handoff: Handoff, events: list[str]) -> None:
    refused = await put_webhook(handoff, url="https://crm.example.com/hooks", events=events)

    body = assert_problem(refused, 422)
    assert {tuple(error["loc"][:2]) for error in body["errors"]} == {("body", "events")}


async def test_every_admin_write_to_a_webhook_is_audited_without_its_secrets(handoff: Handoff) -> None:
    secret = await create_webhook(handoff, "https://crm.example.com/hooks")
    await put_webhook(handoff, url="https://crm.example.com/v2", enabled=False)
    rotated = await handoff.client.post("/v1/webhooks/emea:rotate-secret", headers=handoff.admin)
    await handoff.client.delete("/v1/webhooks/emea", headers=handoff.admin)

    async with handoff.runtime.sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    assert [(e.action, e.entity, e.entity_id) for e in entries] == [
        ("create", "webhook", "emea"),
        ("update", "webhook", "emea"),
        ("update", "webhook", "emea"),
        ("delete", "webhook", "emea"),
    ]
    assert entries[1].before is not None and entries[1].before["url"] == "https://crm.example.com/hooks"
    assert entries[1].after is not None and entries[1].after["enabled"] is False
    kept = json.dumps([(e.before, e.after) for e in entries])
    assert secret not in kept
    assert rotated.json()["secret"] not in kept


async def test_deleting_a_webhook_removes_its_delivery_log_and_queues_nothing_more(
    handoff: Handoff, clock: SteppingClock
) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")
    await apply(handoff, incoming(assigned(), clock.now))

    deleted = await handoff.client.delete("/v1/webhooks/emea", headers=handoff.admin)
    await apply(handoff, incoming(assigned(), clock.now))

    assert deleted.status_code == 204
    assert await deliveries(handoff) == []
    assert (await handoff.client.delete("/v1/webhooks/emea", headers=handoff.admin)).status_code == 404


# Queueing deliveries


async def test_a_redelivered_event_queues_its_delivery_once(handoff: Handoff, clock: SteppingClock) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")
    event = incoming(assigned(), clock.now)

    await apply(handoff, event, event)
    await apply(handoff, event)

    queued = await deliveries(handoff)
    assert [(d.event_id, d.status, d.attempts) for d in queued] == [(event.id, "pending", 0)]
    assert queued[0].lead_id == event.data.lead_id
    assert queued[0].assignment_id == event.data.assignment_id  # type: ignore[attr-defined]


async def test_events_of_other_teams_or_unsubscribed_types_queue_nothing(
    handoff: Handoff, clock: SteppingClock
) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks", events=[LeadAssigned.event_type])
    wanted = incoming(assigned(), clock.now)

    await apply(
        handoff,
        incoming(assigned(team="amer"), clock.now),
        incoming(assigned(team=None), clock.now),
        incoming(status_changed(), clock.now),
        wanted,
    )

    assert [d.event_id for d in await deliveries(handoff)] == [wanted.id]
    assert await deliveries(handoff, "amer") == []


async def test_a_disabled_webhook_queues_nothing(handoff: Handoff, clock: SteppingClock) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks", enabled=False)

    await apply(handoff, incoming(assigned(), clock.now))

    assert await deliveries(handoff) == []


async def test_breaches_and_recycled_leads_go_to_the_webhook_of_their_assignments_team(
    handoff: Handoff, clock: SteppingClock
) -> None:
    await handoff.add_reps(ANA)
    await create_webhook(handoff, "https://crm.example.com/hooks")
    lead = qualified()
    await handoff.route(lead)
    [assignment] = [a for a in await handoff.assignments() if a["lead_id"] == lead.lead_id]
    breached = SlaBreached(
        lead_id=lead.lead_id,
        assignment_id=assignment["assignment_id"],
        rep_id="rep-ana",
        sla="accept",
        due_at=clock.now,
        breached_at=clock.now,
        action="reassigned",
    )
    unknown = breached.model_copy(update={"assignment_id": new_id()})
    recycled = LeadRecycled(lead_id=lead.lead_id, reason="not a fit")
    never_assigned = LeadRecycled(lead_id=new_id(), reason="not a fit")

    events = [incoming(e, clock.now) for e in (breached, unknown, recycled, never_assigned)]
    await apply(handoff, *events)

    queued = await deliveries(handoff)
    assert [(d.event_id, d.event_type, d.assignment_id) for d in queued] == [
        (events[0].id, SlaBreached.event_type, assignment["assignment_id"]),
        (events[2].id, LeadRecycled.event_type, None),
    ]


def test_every_type_a_webhook_subscribes_to_has_a_handler() -> None:
    assert set(webhooks.delivery_handlers()) == set(webhooks.EVENT_TYPES)


# Sending


async def test_a_delivery_is_a_cloudevent_signed_so_the_standard_webhooks_verifier_accepts_it(
    handoff: Handoff, clock: SteppingClock, receiver: Receiver
) -> None:
    secret = await create_webhook(handoff, receiver.url)
    event = incoming(assigned(), clock.now)
    await apply(handoff, event)

    sent = await deliver(handoff, clock)

    assert sent == 1
    await receiver.wait_for(1)
    request = receiver.requests[0]
    assert request.headers["content-type"] == "application/cloudevents+json"
    envelope = Webhook(secret).verify(request.body, request.headers)
    assert envelope["id"] == event.id
    assert envelope["type"] == LeadAssigned.event_type
    assert envelope["specversion"] == "1.0"
    assert envelope["subject"] == event.data.lead_id
    assert envelope["data"]["assignment_id"] == event.data.assignment_id  # type: ignore[attr-defined]
    assert request.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    [delivery] = await deliveries(handoff)
    assert request.headers["webhook-id"] == delivery.id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at == clock.now
    assert await deliver(handoff, clock) == 0


async def test_after_a_rotation_deliveries_are_signed_with_the_new_and_the_old_secret_for_a_day(
    handoff: Handoff, clock: SteppingClock, receiver: Receiver
) -> None:
    old = await create_webhook(handoff, receiver.url)
    rotated = await handoff.client.post("/v1/webhooks/emea:rotate-secret", headers=handoff.admin)
    new = rotated.json()["secret"]
    await apply(handoff, incoming(assigned(), clock.now))

    await deliver(handoff, clock)

    assert rotated.status_code == 200
    assert new.startswith("whsec_") and new != old
    await receiver.wait_for(1)
    request = receiver.requests[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(request.body, request.headers)
    Webhook(old).verify(request.body, request.headers)


async def test_a_failing_receiver_gets_the_same_delivery_again_after_a_backoff_until_it_answers(
    handoff: Handoff, clock: SteppingClock
) -> None:
    async with running_receiver(500, 503) as receiver:
        await create_webhook(handoff, receiver.url)
        await apply(handoff, incoming(assigned(), clock.now))
        started = clock.now

        await deliver(handoff, clock)
        [first] = await deliveries(handoff)
        assert await deliver(handoff, clock) == 0  # not due again yet
        assert first.next_attempt_at is not None
        clock.move_to(first.next_attempt_at)
        await deliver(handoff, clock)
        [second] = await deliveries(handoff)
        assert second.next_attempt_at is not None
        clock.move_to(second.next_attempt_at)
        await deliver(handoff, clock)
        [third] = await deliveries(handoff)

        await receiver.wait_for(3)
    assert receiver.ids() == [first.id] * 3
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert first.last_error == "the receiver answered 500"
    assert started + timedelta(seconds=4) <= first.next_attempt_at <= started + timedelta(seconds=6)
    assert (second.status, second.attempts, second.last_status_code) == ("pending", 2, 503)
    assert first.next_attempt_at + timedelta(seconds=24) <= second.next_attempt_at
    assert second.next_attempt_at <= first.next_attempt_at + timedelta(seconds=36)
    assert (third.status, third.attempts, third.last_status_code, third.last_error) == ("delivered", 3, 200, None)
    assert third.delivered_at == second.next_attempt_at


async def test_a_delivery_that_keeps_failing_is_given_up_after_its_last_attempt(
    handoff: Handoff, clock: SteppingClock
) -> None:
    attempts = webhooks.MAX_ATTEMPTS
    async with running_receiver(*[500] * (attempts + 1)) as receiver:
        await create_webhook(handoff, receiver.url)
        await apply(handoff, incoming(assigned(), clock.now))
        waits: list[timedelta] = []
        for _ in range(attempts):
            await deliver(handoff, clock)
            [delivery] = await deliveries(handoff)
            if delivery.next_attempt_at is not None:
                waits.append(delivery.next_attempt_at - clock.now)
                clock.move_to(delivery.next_attempt_at)
        clock.move_to(clock.now + timedelta(days=7))
        assert await deliver(handoff, clock) == 0
        await receiver.wait_for(attempts)

    assert len(receiver.requests) == attempts
    [given_up] = await deliveries(handoff)
    assert (given_up.status, given_up.attempts, given_up.next_attempt_at) == ("failed", attempts, None)
    assert len(waits) == attempts - 1
    for wait, base in zip(waits, webhooks.RETRY_DELAYS, strict=True):
        assert base * (1 - webhooks.JITTER) <= wait <= base * (1 + webhooks.JITTER)


async def test_finished_deliveries_are_forgotten_after_their_retention_and_pending_ones_never(
    handoff: Handoff, clock: SteppingClock, settings: HandoffSettings
) -> None:
    async with running_receiver(200, 500) as receiver:
        await create_webhook(handoff, receiver.url)
        await apply(handoff, incoming(assigned(), clock.now), incoming(assigned(), clock.now))
        await deliver(handoff, clock)
        await receiver.wait_for(2)
    statuses = sorted(d.status for d in await deliveries(handoff))
    assert statuses == ["delivered", "pending"]
    retention = timedelta(days=settings.webhook_delivery_retention_days)

    async with handoff.runtime.sessions() as session, session.begin():
        kept = await webhooks.forget_old_deliveries(session, clock.now + retention - timedelta(minutes=1), settings)
    async with handoff.runtime.sessions() as session, session.begin():
        forgotten = await webhooks.forget_old_deliveries(
            session, clock.now + retention + timedelta(minutes=1), settings
        )

    assert (kept, forgotten) == (0, 1)
    assert [d.status for d in await deliveries(handoff)] == ["pending"]


def test_retry_delays_grow_from_seconds_to_hours() -> None:
    delays = webhooks.RETRY_DELAYS
    assert delays[0] == timedelta(seconds=5)
    assert all(earlier < later for earlier, later in zip(delays, delays[1:], strict=False))
    assert delays[-1] >= timedelta(hours=1)


async def test_a_410_gone_disables_the_webhook_and_sends_nothing_more(handoff: Handoff, clock: SteppingClock) -> None:
    async with running_receiver(410) as receiver:
        await create_webhook(handoff, receiver.url)
        await apply(handoff, incoming(assigned(), clock.now), incoming(assigned(), clock.now))
        await deliver(handoff, clock)  # one of the two answers 410, the other may be sent beside it
        await receiver.wait_for(1)
        sent = len(receiver.requests)

        clock.move_to(clock.now + timedelta(hours=1))
        await apply(handoff, incoming(assigned(), clock.now))
        assert await deliver(handoff, clock) == 0

    assert len(receiver.requests) == sent
    read = await handoff.client.get("/v1/webhooks/emea", headers=handoff.admin)
    assert read.json()["enabled"] is False
    assert read.json()["disabled_reason"] == "the receiver answered 410 Gone"
    gone = [d for d in await deliveries(handoff) if d.last_status_code == 410]
    assert [(d.status, d.next_attempt_at) for d in gone] == [("failed", None)]
    assert len(await deliveries(handoff)) == 2


async def test_an_unreachable_receiver_is_recorded_and_retried(handoff: Handoff, clock: SteppingClock) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there any more
    await create_webhook(handoff, f"http://127.0.0.1:{port}/hooks")
    await apply(handoff, incoming(assigned(), clock.now))

    await deliver(handoff, clock)

    [delivery] = await deliveries(handoff)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error is not None and "ConnectError" in delivery.last_error
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > clock.now


async def test_a_routed_lead_reaches_its_teams_webhook_through_the_running_service(settings: HandoffSettings) -> None:
    async with running_receiver() as receiver, running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        created = await put_webhook(handoff, url=receiver.url, events=[LeadAssigned.event_type])
        lead = qualified()

        await handoff.route(lead)

        await receiver.wait_for(1)
        secret = created.json()["secret"]
        # The running service's clock stands in 2030, so the timestamp is not checked against now here.
        envelope = json.loads(receiver.requests[0].body)
        assert envelope["type"] == LeadAssigned.event_type
        assert envelope["subject"] == lead.lead_id
        expected = webhooks.signature_headers(
            delivery_id=receiver.requests[0].headers["webhook-id"],
            payload=receiver.requests[0].body.decode(),
            secrets_=[secret],
            sent_at=datetime.fromtimestamp(int(receiver.requests[0].headers["webhook-timestamp"]), UTC),
        )
        assert receiver.requests[0].headers["webhook-signature"] == expected["webhook-signature"]


# The delivery log, and who may do what


async def test_a_team_lead_reads_its_teams_deliveries_newest_first_page_by_page(
    handoff: Handoff, clock: SteppingClock
) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")
    events = [incoming(assigned(), clock.now) for _ in range(3)]
    await apply(handoff, *events)
    lead = handoff.token("assignments:read", team="emea")

    first = await handoff.client.get("/v1/webhooks/emea/deliveries", params={"limit": 2}, headers=lead)
    second = await handoff.client.get(
        "/v1/webhooks/emea/deliveries", params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=lead
    )
    delivered = await handoff.client.get("/v1/webhooks/emea/deliveries", params={"status": "delivered"}, headers=lead)

    assert first.status_code == second.status_code == delivered.status_code == 200
    items = first.json()["items"] + second.json()["items"]
    assert [i["event_id"] for i in items] == [e.id for e in reversed(events)]
    assert second.json()["next_cursor"] is None
    assert items[0] == {
        "delivery_id": items[0]["delivery_id"],
        "event_id": events[2].id,
        "event_type": LeadAssigned.event_type,
        "lead_id": events[2].data.lead_id,
        "assignment_id": events[2].data.assignment_id,  # type: ignore[attr-defined]
        "status": "pending",
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "next_attempt_at": clock.now.isoformat().replace("+00:00", "Z"),
        "delivered_at": None,
        "created_at": clock.now.isoformat().replace("+00:00", "Z"),
    }
    assert delivered.json() == {"items": [], "next_cursor": None}


async def test_the_delivery_log_refuses_unknown_statuses_and_cursors(handoff: Handoff) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")

    bad_status = await handoff.client.get(
        "/v1/webhooks/emea/deliveries", params={"status": "lost"}, headers=handoff.admin
    )
    bad_cursor = await handoff.client.get("/v1/webhooks/emea/deliveries", params={"cursor": "x"}, headers=handoff.admin)

    assert [e["loc"] for e in assert_problem(bad_status, 422)["errors"]] == [["query", "status"]]
    assert_problem(bad_cursor, 400)


ADMIN_CALLS = [
    ("PUT", "/v1/webhooks/emea", {"url": "https://crm.example.com/other"}),
    ("GET", "/v1/webhooks/emea", None),
    ("POST", "/v1/webhooks/emea:rotate-secret", None),
    ("DELETE", "/v1/webhooks/emea", None),
]
ALL_CALLS = [*ADMIN_CALLS, ("GET", "/v1/webhooks/emea/deliveries", None)]
CALLERS: dict[str, dict[str, Any] | None] = {
    "no token": None,
    "rep of the team": {"scopes": ("assignments:read", "assignments:write"), "rep_id": "rep-ana", "team": "emea"},
    "lead of another team": {"scopes": ("assignments:read",), "team": "amer"},
    "integration": {"scopes": ("assignments:read",)},
    "wrong scope": {"scopes": ("leads:read", "metrics:read")},
}


async def call(
    handoff: Handoff, method: str, path: str, body: dict[str, Any] | None, caller: dict[str, Any] | None
) -> httpx.Response:
    headers = {}
    if caller is not None:
        headers = handoff.token(*caller["scopes"], rep_id=caller.get("rep_id"), team=caller.get("team"))
    return await handoff.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ALL_CALLS)
@pytest.mark.parametrize("caller", list(CALLERS))
async def test_only_admins_manage_webhooks_and_only_they_and_the_teams_lead_read_deliveries(
    handoff: Handoff, clock: SteppingClock, method: str, path: str, body: dict[str, Any] | None, caller: str
) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")
    await apply(handoff, incoming(assigned(), clock.now))

    answer = await call(handoff, method, path, body, CALLERS[caller])

    if CALLERS[caller] is None:
        assert_problem(answer, 401)
    else:
        assert answer.status_code in (403, 404), answer.text
        assert "items" not in answer.text and "crm.example.com" not in answer.text
    read = await handoff.client.get("/v1/webhooks/emea", headers=handoff.admin)
    assert read.json()["url"] == "https://crm.example.com/hooks"
    assert len(await deliveries(handoff)) == 1


async def test_the_teams_lead_cannot_manage_its_webhook(handoff: Handoff) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")

    answers = [await call(handoff, method, path, body, EMEA_LEAD) for method, path, body in ADMIN_CALLS]

    assert [a.status_code for a in answers] == [403] * len(ADMIN_CALLS)


@pytest.mark.parametrize(("method", "path", "body"), ALL_CALLS)
async def test_an_admin_may_do_everything_with_a_webhook(
    handoff: Handoff, method: str, path: str, body: dict[str, Any] | None
) -> None:
    await create_webhook(handoff, "https://crm.example.com/hooks")

    answer = await call(handoff, method, path, body, {"scopes": ("admin",)})

    assert answer.status_code in (200, 204), answer.text


async def test_the_teams_lead_reads_no_log_where_the_team_has_no_webhook(handoff: Handoff) -> None:
    answer = await call(handoff, "GET", "/v1/webhooks/emea/deliveries", None, EMEA_LEAD)

    assert_problem(answer, 404)
