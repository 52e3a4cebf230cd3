"""What every service's HTTP side shares: the app factory, problem+json errors, auth, health and metrics."""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.auth import InvalidToken, Principal, TokenVerifier
from baton.db import classify_database_error
from baton.errors import BatonError, Forbidden, TooManyRequests, Unauthorized
from baton.events import Clock, new_id, utcnow
from baton.logs import configure_logging
from baton.runtime import ServiceRuntime, ServiceSpec
from baton.settings import Settings

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")


class Page(BaseModel, Generic[ItemT]):
    """A page of a list; pass ``next_cursor`` back as ``?cursor=`` for the next one (null at the end)."""

    items: list[ItemT]
    next_cursor: str | None

    @classmethod
    def of(
        cls, rows: Sequence[RowT], *, limit: int, item: Callable[[RowT], ItemT], cursor: Callable[[RowT], str]
    ) -> Page[ItemT]:
        """Builds a page from up to ``limit + 1`` rows fetched in cursor order.

        Args:
            rows: The rows the query returned; one past ``limit`` means there is a next page.
            limit: The page size asked for.
            item: Turns a row into the item served.
            cursor: The cursor value of a row.

        Returns:
            The page.
        """
        shown = rows[:limit]
        return cls(items=[item(r) for r in shown], next_cursor=cursor(shown[-1]) if len(rows) > limit else None)


class BadCursor(BatonError):
    """A ``cursor`` that no ``next_cursor`` could have been."""

    status = 400
    title = "Bad cursor"


_LARGEST_POSITION = 2**31 - 1


def position_cursor(cursor: str | None) -> int | None:
    """The position a numeric ``next_cursor`` names, or None for the first page.

    Raises:
        BadCursor: The cursor is not a non-negative integer a 32-bit column can hold.
    """
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit() and int(cursor) <= _LARGEST_POSITION):
        raise BadCursor("cursor must be a value from next_cursor")
    return int(cursor)


PROBLEM_JSON = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499
"""The ``status`` label of a request whose caller disconnected before it was read (as nginx logs it)."""
# An incoming request id is reused only if it is a plain token, so it is safe in logs and headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

HTTP_REQUESTS = Counter(
    "baton_http_requests_total", "HTTP requests answered.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "baton_http_request_duration_seconds", "Time to answer HTTP requests.", ["service", "method", "route"]
)


def problem(status: int, detail: str, *, title: str | None = None, **extensions: Any) -> JSONResponse:
    """Builds an RFC 9457 problem+json response.

    Args:
        status: HTTP status.
        detail: What went wrong, for a person.
        title: Short summary; the status phrase by default.
        **extensions: Extra members, e.g. ``errors`` for validation failures.

    Returns:
        The response.
    """
    body = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status, "detail": detail}
    body.update(extensions)
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _install_problem_handlers(app: FastAPI) -> None:
    async def on_baton_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, BatonError)
        return _problem_for(exc)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        response = problem(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        return problem(422, f"request failed validation: {fields}", title="Unprocessable content", errors=errors)

    async def on_database_error(request: Request, exc: Exception) -> Response:
        error = classify_database_error(exc)
        if error is None:
            raise exc  # a bug, not the caller's data nor an outage: RequestMiddleware answers 500
        context = {"request_id": request.state.request_id, "method": request.method, "path": request.url.path}
        if error.status >= 500:
            logger.error("database unavailable", exc_info=exc, extra=context)
        else:
            logger.warning("database refused the request's data: %s", error.detail, extra=context)
        return _problem_for(error)

    app.add_exception_handler(BatonError, on_baton_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    # SQLAlchemy wraps what the drivers raise; a refused or unresolvable connection arrives as a bare OSError.
    app.add_exception_handler(SQLAlchemyError, on_database_error)
    app.add_exception_handler(OSError, on_database_error)


def _problem_for(error: BatonError) -> JSONResponse:
    response = problem(error.status, error.detail, title=error.title, **error.extensions)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


class RequestMiddleware:
    """What every HTTP request goes through first: a request id, the body size limit, metrics and a last-resort 500.

    A pure ASGI middleware: unlike ``BaseHTTPMiddleware`` it adds no task or memory stream per request.
    """

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int) -> None:
        """Wraps the app.

        Args:
            app: The ASGI app inside.
            service: The ``service`` label of the request metrics.
            max_body_bytes: Bodies larger than this are refused with 413.
        """
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        content_length, request_id = _read_headers(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the app's body read, so that the 413 goes out before any more is read.
                    raise self._too_large()
            return message

        try:
            if content_length is not None and content_length > self.max_body_bytes:
                # Refused before routing, authentication or reading a byte of it.
                too_large = self._too_large()
                response = problem(too_large.status_code, too_large.detail)
                response.headers.update(too_large.headers or {})
                await response(scope, receive, send_with_request_id)
            else:
                await self.app(scope, receive_within_limit, send_with_request_id)
        except ClientDisconnect:
            # The caller hung up before its body was read: nothing failed here and there is nobody to answer.
            status = CLIENT_CLOSED_REQUEST
            logger.info(
                "client disconnected before its request was read",
                extra={"request_id": request_id, "method": scope["method"], "path": scope["path"]},
            )
        except Exception:
            logger.exception(
                "request failed", extra={"request_id": request_id, "method": scope["method"], "path": scope["path"]}
            )
            if response_started:
                status = 500
                raise  # too late for an error answer; the server drops the connection
            detail = "the service failed to answer; quote the request id when reporting it"
            await problem(500, detail, request_id=request_id)(scope, receive, send_with_request_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(
            413,
            detail=f"the request body is over the {self.max_body_bytes:,}-byte limit",
            headers={"Connection": "close"},
        )


def _read_headers(scope: Scope) -> tuple[int | None, str]:
    content_length: int | None = None
    request_id: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                content_length = None
        elif name == b"x-request-id":
            candidate = value.decode("latin-1")
            request_id = candidate if _SANE_REQUEST_ID.fullmatch(candidate) else None
    return content_length, request_id or new_id()


def runtime_of(request: Request) -> ServiceRuntime:
    """Returns the running service's runtime (engine, bus, settings)."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> ServiceRuntime:
    """The running service's runtime, as a dependency (async, so it runs on the event loop, not a thread)."""
    return runtime_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yields a database session for one request."""
    async with runtime_of(request).sessions() as session:
        yield session


async def get_now(request: Request) -> datetime:
    """Reads the service's clock once for a request."""
    return runtime_of(request).clock()


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
NowDep = Annotated[datetime, Depends(get_now)]
_bearer = HTTPBearer(auto_error=False)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that demands a bearer token granting ``scope``.

    Args:
        scope: One of ``baton.auth.SCOPES``.

    Returns:
        The dependency; it yields the caller.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise Unauthorized("an Authorization: Bearer token is required")
        tokens: TokenVerifier = request.app.state.tokens
        try:
            principal = tokens.verify(credentials.credentials)
        except InvalidToken as exc:
            raise Unauthorized(f"the bearer token is not valid: {exc}") from None
        if not principal.allows(scope):
            raise Forbidden(f"this token lacks the {scope!r} scope")
        return principal

    return dependency


AdminDep = Annotated[Principal, Depends(require_scope("admin"))]
LeadsWriterDep = Annotated[Principal, Depends(require_scope("leads:write"))]
LeadsReaderDep = Annotated[Principal, Depends(require_scope("leads:read"))]
AssignmentsReaderDep = Annotated[Principal, Depends(require_scope("assignments:read"))]
AssignmentsWriterDep = Annotated[Principal, Depends(require_scope("assignments:write"))]
MetricsReaderDep = Annotated[Principal, Depends(require_scope("metrics:read"))]


def _health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    async def readyz(runtime: RuntimeDep) -> dict[str, Any] | JSONResponse:
        """The database and the bus are reachable."""
        checks = await runtime.check_readiness()
        if all(checks.values()):
            return {"status": "ready", "checks": checks}
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem(503, f"not ready: {failing} unreachable", checks=checks)

    @router.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics in text format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    spec: ServiceSpec,
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    description: str,
    clock: Clock = utcnow,
) -> FastAPI:
    """Builds a service's FastAPI app: JSON logs, its runtime (started and stopped by the lifespan), routes.

    Args:
        spec: What makes the service itself: name, database, migrations, event handlers.
        settings: The service's settings.
        routers: The service's API routers.
        description: One paragraph for the OpenAPI page.
        clock: The service's clock, read by request handlers (``NowDep``) and event handlers alike.

    Returns:
        The app, ready for uvicorn.
    """
    configure_logging(spec.name, settings.log_level)
    runtime = ServiceRuntime(spec, settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        # What start-up left (modules, the app, SQLAlchemy's and pydantic's caches) lives as long as the
        # process; frozen, the full collections that requests trigger no longer walk it every time.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await runtime.stop()

    app = FastAPI(title=f"Baton {runtime.spec.name}", description=description, version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.tokens = TokenVerifier(runtime.signing_secret)
    _install_problem_handlers(app)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)

    app.add_middleware(RequestMiddleware, service=runtime.spec.name, max_body_bytes=settings.max_body_bytes)
    return app
