"""Browser end-to-end fixtures: the system Chromium driven by Playwright
(async API), and a real HAProxy process in front of real gateway processes.

Nothing is downloaded: Chromium is Debian's (``playwright install`` is never
run), HAProxy is Debian's ``haproxy`` binary. Without either, the tests that
need it skip with the reason, or fail with ``CI=true`` (``require_tool``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from switchboard_harness import GatewayProcess, HAProxyProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
HAPROXY_CANDIDATES = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path(require_tool: Callable[..., str]) -> str:
    """``CHROMIUM`` from the environment, else Debian's binary (the real one
    under /usr/lib first: /usr/bin/chromium is a wrapper script)."""
    why = "the browser tier drives the system Chromium through Playwright; set CHROMIUM=... to use another"
    override = os.environ.get("CHROMIUM")
    if override:
        return require_tool(override, why)
    return require_tool("chromium", why, candidates=CHROMIUM_CANDIDATES)


@pytest.fixture
async def browser(require_tool: Callable[..., str]) -> AsyncIterator[object]:
    """A headless system Chromium for one test (launch takes about 1 s)."""
    executable = chromium_path(require_tool)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ------------------------------------------------------------------ HAProxy

HAProxyFactory = Callable[[list[GatewayProcess]], HAProxyProcess]


@pytest.fixture
def start_haproxy(tmp_path: Path, require_tool: Callable[..., str]) -> Iterator[HAProxyFactory]:
    """``start_haproxy([gw_a, gw_b])`` → a started HAProxy in front of them,
    answering ``/healthz`` through its frontend with every server UP."""
    binary = require_tool(
        "haproxy",
        "the browser tier puts a real load balancer in front of the gateways (apt-get install haproxy)",
        candidates=HAPROXY_CANDIDATES,
    )
    started: list[HAProxyProcess] = []

    def start(gateways: list[GatewayProcess]) -> HAProxyProcess:
        proxy = HAProxyProcess(binary, gateways, tmp_path)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
