"""The intake limit: a FastAPI app with one JSON ``POST`` endpoint that answers 202 ``{}`` and does nothing else.

Started the way ``baton run`` starts the services (``uvicorn --factory ... --no-access-log``) and loaded
by the same wrk command as Baton's intake, it shows what this machine's Python web stack can do at most.
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, status


def create_app() -> FastAPI:
    """Builds the bare app."""
    app = FastAPI()

    @app.post("/v1/leads", status_code=status.HTTP_202_ACCEPTED)
    async def accept(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return {}

    @app.post("/v1/leads:batch", status_code=status.HTTP_202_ACCEPTED)
    async def accept_batch(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
