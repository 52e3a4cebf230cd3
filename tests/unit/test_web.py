"""The HTTP edge every service shares: problem+json for every failure, request ids, body limits, metrics, tokens."""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from sqlalchemy import text
from starlette.types import Message

from baton.auth import InvalidToken, TokenVerifier, issue_token
from baton.db import create_engine
from baton.runtime import ServiceSpec
from baton.settings import Settings
from baton.web import AdminDep, SessionDep, create_service_app
from tests.unit.conftest import assert_problem

PROBLEM_JSON = "application/problem+json"
SERVICE = "web-probe"
LIMIT = 1_048_576
SECRET = "s" * 48

probe = APIRouter(prefix="/probe")


class Item(BaseModel):
    id: int
    code: str | None
    qty: int = 0


@probe.get("/crash")
async def crash() -> None:
    raise RuntimeError("internal state the caller must never see")


@probe.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@probe.post("/admin-echo")
async def admin_echo(request: Request, _: AdminDep) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@probe.post("/items", status_code=201)
async def add_item(item: Item, session: SessionDep) -> dict[str, int]:
    async with session.begin():
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS probe_items ("
                "id INTEGER PRIMARY KEY, code VARCHAR(10) NOT NULL, qty INTEGER CONSTRAINT qty_not_negative "
                "CHECK (qty >= 0))"
            )
        )
        await session.execute(
            text("INSERT INTO probe_items (id, code, qty) VALUES (:id, :code, :qty)"), item.model_dump()
        )
    return {"id": item.id}


@probe.get("/unreachable-database")
async def unreachable_database() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://baton:baton@127.0.0.1:{port}/nowhere")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def probe_app(tmp_path: Path) -> FastAPI:
    spec = ServiceSpec(name=SERVICE, database="web_probe", migrations="baton_handoff:migrations")
    settings = Settings(data_dir=tmp_path, jwt_secret=SECRET)
    return create_service_app(spec, settings, [probe], description="Probe routes for the shared HTTP edge.")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = probe_app(tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client,
    ):
        yield client


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, scopes=['admin'])}"}


async def requests_counted(client: httpx.AsyncClient, route: str, status: str) -> float:
    return await requests_counted_for(client, "GET", route, status)


async def requests_counted_for(client: httpx.AsyncClient, method: str, route: str, status: str) -> float:
    metrics = await client.get("/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "baton_http_requests_total"
        and sample.labels == {"service": SERVICE, "method": method, "route": route, "status": status}
    )


# failures of every kind are problem+json


async def test_unknown_route_is_a_problem_json_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404)


async def test_wrong_method_is_a_problem_json_405_naming_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.delete("/probe/crash")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_validation_error_names_every_failing_field(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/probe/items", json={"id": "not a number", "qty": "x"}), 422)

    assert {tuple(error["loc"]) for error in body["errors"]} == {("body", "id"), ("body", "code"), ("body", "qty")}
    assert "body.id" in body["detail"] and "body.code" in body["detail"]


async def test_unhandled_exception_is_a_problem_json_500_with_a_request_id_and_no_trace(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/probe/crash")

    body = assert_problem(response, 500)
    assert body["request_id"] == response.headers["x-request-id"]
    assert "RuntimeError" not in response.text
    assert "internal state" not in response.text
    assert "Traceback" not in response.text


async def test_unhandled_exception_is_logged_with_its_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/probe/crash", headers={"X-Request-ID": "req-4711"})

    assert response.json()["request_id"] == "req-4711"
    failures = [record for record in caplog.records if getattr(record, "request_id", None) == "req-4711"]
    assert len(failures) == 1
    assert failures[0].levelname == "ERROR"
    assert getattr(failures[0], "path", None) == "/probe/crash"
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


async def test_unhandled_exception_is_counted_with_status_500(client: httpx.AsyncClient) -> None:
    before = await requests_counted(client, "/probe/crash", "500")

    await client.get("/probe/crash")
    await client.get("/probe/crash")

    assert await requests_counted(client, "/probe/crash", "500") == before + 2


@pytest.fixture
async def probe_service(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The probe app started, and a client of it; made before the test, so log capture sees its records."""
    app = probe_app(tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client,
    ):
        yield app, client


async def test_a_caller_that_hangs_up_before_its_body_is_read_is_no_failure(
    probe_service: tuple[FastAPI, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = probe_service
    caplog.set_level(logging.INFO, logger="baton.web")
    sent: list[Message] = []

    async def hang_up() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/probe/echo",
        "raw_path": b"/probe/echo",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("probe", 80),
    }
    before = [await requests_counted_for(client, "POST", "/probe/echo", status) for status in ("500", "499")]

    await app(scope, hang_up, send)

    after = [await requests_counted_for(client, "POST", "/probe/echo", status) for status in ("500", "499")]
    assert sent == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "baton.web"] == [
        ("INFO", "client disconnected before its request was read")
    ]
    assert after == [before[0], before[1] + 1]


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    before = await requests_counted(client, "/healthz", "200")
    unmatched_before = await requests_counted(client, "unmatched", "404")

    await client.get("/healthz")
    await client.get("/no/such/route/4711")

    assert await requests_counted(client, "/healthz", "200") == before + 1
    assert await requests_counted(client, "unmatched", "404") == unmatched_before + 1


async def test_start_up_objects_are_left_out_of_collections_only_while_the_service_runs(tmp_path: Path) -> None:
    app = probe_app(tmp_path)

    async with app.router.lifespan_context(app):
        frozen_while_running = gc.get_freeze_count()

    assert frozen_while_running > 0
    assert gc.get_freeze_count() == 0


# request ids


async def test_every_answer_carries_a_new_request_id(client: httpx.AsyncClient) -> None:
    first, second = await client.get("/healthz"), await client.get("/healthz")

    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_incoming_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.9:2"})

    assert response.headers["x-request-id"] == "lb-7f3a.9:2"


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 129, "<script>", "-leading-dash", "a\tb"])
async def test_an_unsafe_incoming_request_id_is_replaced(client: httpx.AsyncClient, incoming: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": incoming})

    assert response.headers["x-request-id"] not in ("", incoming)


# body limit


async def test_body_with_declared_length_over_the_limit_is_refused_before_authentication(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/probe/admin-echo", content=b"x" * (5 * 1024 * 1024))

    body = assert_problem(response, 413)
    assert "1,048,576" in body["detail"]
    assert response.headers["connection"] == "close"


async def test_declared_oversize_is_refused_even_where_the_route_reads_no_body(client: httpx.AsyncClient) -> None:
    response = await client.request("GET", "/healthz", content=b"x" * (LIMIT + 1))

    assert_problem(response, 413)


async def test_streamed_body_is_refused_as_soon_as_it_passes_the_limit(client: httpx.AsyncClient) -> None:
    chunk = b"x" * 65_536
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(800):
            sent += 1
            yield chunk

    response = await client.post("/probe/echo", content=fifty_megabytes())

    assert_problem(response, 413)
    assert "content-length" not in response.request.headers
    # The chunk that crossed the limit is the last one read: 17 chunks of 64 KiB for a 1 MiB limit.
    assert sent == LIMIT // len(chunk) + 1


async def test_body_exactly_at_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/probe/echo", content=b"x" * LIMIT)

    assert response.status_code == 200
    assert response.json() == {"bytes": LIMIT}


async def test_streamed_body_just_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    async def just_under() -> AsyncIterator[bytes]:
        for _ in range(15):
            yield b"x" * 65_536
        yield b"x" * (65_536 - 1)

    response = await client.post("/probe/echo", content=just_under())

    assert response.status_code == 200
    assert response.json() == {"bytes": LIMIT - 1}


async def test_body_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_MAX_BODY_BYTES", "10")

    assert Settings(data_dir=tmp_path).max_body_bytes == 10


# database failures, answered by what the driver says (SQLite here; PostgreSQL in tests/integration)


async def test_duplicate_primary_key_is_a_409_naming_the_column(client: httpx.AsyncClient) -> None:
    assert (await client.post("/probe/items", json={"id": 1, "code": "a"})).status_code == 201

    body = assert_problem(await client.post("/probe/items", json={"id": 1, "code": "b"}), 409)

    assert body["detail"] == "a row with the same id already exists in probe_items"


async def test_missing_required_column_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/probe/items", json={"id": 2, "code": None}), 422)

    assert body["detail"] == "probe_items.code must not be null"


async def test_broken_check_is_a_422_naming_the_constraint(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/probe/items", json={"id": 3, "code": "c", "qty": -1}), 422)

    assert "qty_not_negative" in body["detail"]


async def test_unreachable_database_is_a_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/probe/unreachable-database")

    body = assert_problem(response, 503)
    assert "database" in body["detail"]
    assert response.headers["retry-after"]


# bearer tokens


async def test_a_valid_token_is_accepted_on_every_request(client: httpx.AsyncClient) -> None:
    headers = admin()

    answers = [await client.post("/probe/admin-echo", content=b"{}", headers=headers) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    now = 1_700_000_000.0
    verifier = TokenVerifier(SECRET, clock=lambda: now)
    token = issue_token(SECRET, scopes=["admin"], ttl=timedelta(hours=1))
    expires_at = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    now = expires_at - 1
    assert verifier.verify(token).scopes == {"admin"}

    now = expires_at

    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_token_already_expired_when_first_seen_is_refused() -> None:
    verifier = TokenVerifier(SECRET, clock=lambda: 4_000_000_000.0)

    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(issue_token(SECRET, scopes=["admin"], ttl=timedelta(days=30)))


def test_a_token_signed_with_another_key_is_refused() -> None:
    verifier = TokenVerifier(SECRET)

    with pytest.raises(InvalidToken):
        verifier.verify(issue_token("o" * 48, scopes=["admin"]))


def test_the_verifier_remembers_a_bounded_number_of_tokens() -> None:
    verifier = TokenVerifier(SECRET, capacity=3)
    tokens = [issue_token(SECRET, scopes=["leads:read"], subject=f"caller-{n}") for n in range(5)]

    principals = [verifier.verify(token) for token in tokens]

    assert [p.subject for p in principals] == [f"caller-{n}" for n in range(5)]
    assert len(verifier) == 3
