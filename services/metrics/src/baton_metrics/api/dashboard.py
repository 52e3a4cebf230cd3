"""GET /dashboard: the ops page, static HTML, CSS and JavaScript shipped inside the package."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from baton.errors import NotFound

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_FILES = files("baton_metrics") / "dashboard"
_MEDIA_TYPES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
# Only what the page itself ships: no inline script or style, no other origin (the page works offline).
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/dashboard")
async def dashboard() -> Response:
    """The ops dashboard: KPI tiles against targets, funnel, live SLA board, trends and Baton's pipeline clock."""
    page = (_FILES / "index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> Response:
    """The page's stylesheet and script."""
    media_type = _MEDIA_TYPES.get(asset)
    if media_type is None:
        raise NotFound(f"the dashboard has no {asset}")
    return Response((_FILES / asset).read_bytes(), media_type=f"{media_type}; charset=utf-8", headers=_HEADERS)
