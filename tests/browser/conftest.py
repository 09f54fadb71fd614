"""Browser end-to-end fixtures: the system Chromium driven by Playwright
(async API), and a real HAProxy process in front of real gateway processes.

Nothing is downloaded: Chromium is Debian's (``playwright install`` is never
run), HAProxy is Debian's ``haproxy`` binary. Without either, the tests that
need it skip with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from switchboard_harness import GatewayProcess, HAProxyProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """``CHROMIUM`` from the environment, else Debian's binary (the real one
    under /usr/lib first: /usr/bin/chromium is a wrapper script)."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """A headless system Chromium for one test (launch takes about 1 s)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium binary (looked for {', '.join(CHROMIUM_CANDIDATES)}; set CHROMIUM=...)")
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
def start_haproxy(tmp_path: Path) -> Iterator[HAProxyFactory]:
    """``start_haproxy([gw_a, gw_b])`` → a started HAProxy in front of them,
    answering ``/healthz`` through its frontend with every server UP."""
    binary = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        pytest.skip("no haproxy binary (apt-get install haproxy)")
    started: list[HAProxyProcess] = []

    def start(gateways: list[GatewayProcess]) -> HAProxyProcess:
        proxy = HAProxyProcess(binary, gateways, tmp_path)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
