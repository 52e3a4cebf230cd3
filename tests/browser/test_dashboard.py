"""The ops dashboard in a real browser (headless Chromium) against the whole system: it shows what the
KPI API says and follows a new lead from the stream without a reload."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.system import RunningSystem, embedded_system

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make test` installs it); Playwright downloads no browser
ARTIFACTS = Path(__file__).parent / "artifacts"
UPDATE_SECONDS = 30
ACCEPT_SECONDS = 20  # at risk after 16 s: the board changes with time alone, without an event
TILES = {"mql": "mql", "received": "received", "assigned": "assigned", "accepted": "accepted", "won": "won"}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[RunningSystem]:
    """``baton run`` on the embedded default, on ports clear of the end-to-end tests'."""
    with embedded_system(tmp_path, base_port=18301) as running:
        yield running
    assert running.exit_codes == [0], "baton run did not stop cleanly on Ctrl-C"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


class CuttableLink:
    """A TCP proxy between the browser and metrics that can go down, as a network does: cutting every
    connection it carries and refusing new ones until it is up again."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.down = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drops every open connection."""
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._open |= {writer, upstream_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()
            self._open.discard(sink)

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))


def watch_console(page: Page) -> list[str]:
    """Every console error and uncaught exception of the page, as it happens."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    return problems


async def kpis_today(client: httpx.AsyncClient, system: RunningSystem) -> dict[str, Any]:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    response = await client.get(
        f"{system.urls['metrics']}/v1/kpis", params={"from": today, "to": today}, headers=system.token("metrics:read")
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def expect_tiles_to_show(page: Page, report: dict[str, Any]) -> None:
    for tile, kpi in TILES.items():
        await expect(page.locator(f"#tile-{tile} .value")).to_have_text(f"{report['totals'][kpi]:,}")


async def save_screenshots(page: Page, tmp_path: Path) -> None:
    """Full-page screenshots at desktop and phone width, kept with the test and in tests/browser/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    for name, width in (("dashboard", 1440), ("dashboard-phone", 390)):
        await page.set_viewport_size({"width": width, "height": 900})
        shot = tmp_path / f"{name}.png"
        await page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, ARTIFACTS / shot.name)


async def test_dashboard_shows_the_kpis_and_follows_a_new_lead_without_a_reload(
    system: RunningSystem, browser: Browser, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        rep = await client.post(
            f"{system.urls['handoff']}/v1/reps",
            json={"rep_id": "rep-ada", "name": "Ada", "team": "core", "capacity": 100},
            headers=system.token("admin"),
        )
        assert rep.status_code == 201, rep.text
        rule = await client.post(
            f"{system.urls['handoff']}/v1/routing-rules",
            json={
                "name": "quick-accept",
                "priority": 1,
                "team": "core",
                "sla": {"accept_within": f"PT{ACCEPT_SECONDS}S", "touch_within": "PT4H", "clock": "wall_clock"},
                "max_attempts": 1,
            },
            headers=system.token("admin"),
        )
        assert rule.status_code == 201, rule.text
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        problems = watch_console(page)

        await page.goto(f"{system.urls['metrics']}/dashboard")
        await page.locator("#token").fill(system.token("metrics:read")["Authorization"].removeprefix("Bearer "))
        await page.get_by_role("button", name="Open the dashboard").click()
        await expect(page.locator("#connection")).to_have_text("live", timeout=UPDATE_SECONDS * 1000)
        before = await kpis_today(client, system)
        await expect_tiles_to_show(page, before)
        await expect(page.locator("#tile-open .value")).to_have_text("0")
        assert await page.evaluate("sessionStorage.length") == 1 and await page.evaluate("localStorage.length") == 0

        lead = await client.post(
            f"{system.urls['lead-ingest']}/v1/leads",
            json={"email": "grace@hopper.example", "title": "Engineer", "activities": [{"type": "demo_request"}]},
            headers=system.token("leads:write"),
        )
        assert lead.status_code == 202, lead.text
        posted_at = time.monotonic()

        await expect(page.locator("#tile-received .value")).to_have_text(
            f"{before['totals']['received'] + 1:,}", timeout=UPDATE_SECONDS * 1000
        )
        received_after = time.monotonic() - posted_at
        await expect(page.locator("#tile-open .value")).to_have_text("1", timeout=UPDATE_SECONDS * 1000)
        await expect(page.locator("#sla-summary")).to_contain_text("1 open assignment: 0 at risk")
        await expect(page.locator("#tile-mql .value")).to_have_text(f"{before['totals']['mql'] + 1:,}")
        await expect(page.locator("#funnel [data-stage=assigned] .count")).to_contain_text("1")
        print(f"lead posted → received tile changed in {received_after:.2f} s")

        await expect_tiles_to_show(page, await kpis_today(client, system))

        at_risk = page.locator("#sla-rows tbody tr")
        await expect(at_risk.locator(".badge")).to_have_text("at risk", timeout=UPDATE_SECONDS * 1000)
        await expect(at_risk.locator("td").first).to_have_text("rep-ada")
        await save_screenshots(page, tmp_path)
        # Ada lets it run out: handoff breaches it, and her compliance shows it.
        await page.set_viewport_size({"width": 1440, "height": 900})
        await expect(page.locator("#reps tbody tr")).to_contain_text("rep-ada", timeout=UPDATE_SECONDS * 1000)
        await expect(page.locator("#reps tbody tr td").nth(2)).to_have_text("1")
        await expect(page.locator("#tile-open .value")).to_have_text("0")
    assert problems == []


async def test_dashboard_shows_reconnecting_while_the_stream_is_down_and_catches_up_after(
    system: RunningSystem, browser: Browser
) -> None:
    link = CuttableLink(system.urls["metrics"])
    async with link as metrics, httpx.AsyncClient(timeout=30) as client:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        problems = watch_console(page)
        await page.goto(f"{metrics}/dashboard")
        await page.locator("#token").fill(system.token("metrics:read")["Authorization"].removeprefix("Bearer "))
        await page.get_by_role("button", name="Open the dashboard").click()
        await expect(page.locator("#connection")).to_have_text("live", timeout=UPDATE_SECONDS * 1000)
        await expect(page.locator("#tile-received .value")).to_have_text("0")
        assert problems == []
        await page.evaluate("window.beforeTheDrop = true")

        link.down = True
        link.cut()
        await expect(page.locator("#connection")).to_have_text("reconnecting…", timeout=UPDATE_SECONDS * 1000)
        lead = await client.post(
            f"{system.urls['lead-ingest']}/v1/leads",
            json={"email": "katherine@johnson.example"},
            headers=system.token("leads:write"),
        )
        assert lead.status_code == 202, lead.text
        await expect(page.locator("#tile-received .value")).to_have_text("0")

        link.down = False
        await expect(page.locator("#connection")).to_have_text("live", timeout=UPDATE_SECONDS * 1000)
        await expect(page.locator("#tile-received .value")).to_have_text("1", timeout=UPDATE_SECONDS * 1000)
        assert await page.evaluate("window.beforeTheDrop === true"), "the page reloaded"
    # The browser reports the stream it lost, and nothing else.
    assert all(problem.startswith("error: Failed to load resource: net::ERR_") for problem in problems)
