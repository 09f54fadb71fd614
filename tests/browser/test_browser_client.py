"""The browser client's connection rules, in the system Chromium against real
gateway processes (and a real HAProxy for the fleet):

- reconnects back off exponentially while every socket is accepted and closed
  with 1012 before ``welcome`` (a draining fleet), and the backoff starts over
  only after a ``welcome``;
- publishes acked but not yet seen ("Sent" ghosts) are forgotten when their
  room is left or the user signs out;
- after 4001 the client gets a new token before it reconnects; after 4003 it
  does not reconnect by itself and says why.

Frames are held back or closes injected with Playwright's WebSocket routing
in front of a real gateway; connection attempts are timed in the page by a
thin wrapper around ``WebSocket``. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from .pages import STEP_MS, expect_message, new_tab, served_by, sign_in, submit_sign_in, type_and_send

pytestmark = pytest.mark.browser

WS_URL = re.compile(r"/ws\?")
GUEST = {"ALLOW_GUESTS": "true"}

# The client's backoff (transport.js): attempt n waits between half and all of
# min(15 s, 0.5 s * 2^n), and starts over after a welcome.
BACKOFF_BASE_MS = 500
TIMER_SLACK_MS = 5  # timer and clock granularity; a timer never fires early by more

# Records every WebSocket the page creates: when, how it ended, whether it
# got `welcome`. Installed before the client's modules run.
RECORD_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  const log = [];
  window.__sockets = log;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const entry = { url: String(url), openedAt: performance.now(), closedAt: null, code: null, welcome: false };
      log.push(entry);
      this.addEventListener("message", (ev) => {
        try { if (JSON.parse(ev.data).type === "welcome") entry.welcome = true; } catch {}
      });
      this.addEventListener("close", (ev) => { entry.code = ev.code; entry.closedAt = performance.now(); });
    }
  };
})();
"""


async def sockets(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("() => window.__sockets")


async def wait_sockets(page: Page, count: int, timeout_ms: int, closed: bool = True) -> list[dict[str, Any]]:
    """The socket log once it has `count` entries (all of them closed, if asked)."""
    await page.wait_for_function(
        """([count, closed]) => window.__sockets.length >= count
             && (!closed || window.__sockets.slice(0, count).every((s) => s.closedAt !== null))""",
        arg=[count, closed],
        timeout=timeout_ms,
    )
    return await sockets(page)


# ------------------------------------------------------------------ backoff


async def test_reconnects_to_a_draining_fleet_back_off_until_a_welcome(
    browser: Browser, start_gateway, start_haproxy
) -> None:
    drained = start_gateway(NODE_ID="gw-a", DRAIN_NOTICE="0.2", DRAIN_TIMEOUT="3", **GUEST)
    draining = start_gateway(NODE_ID="gw-b", DRAIN_NOTICE="60", DRAIN_TIMEOUT="70", **GUEST)
    healthy = start_gateway(NODE_ID="gw-c", DRAIN_NOTICE="0.2", DRAIN_TIMEOUT="3", **GUEST)
    lb = start_haproxy([drained, draining, healthy])
    for gw in (draining, healthy):
        lb.set_server_state(gw.node_id, "maint")
        await lb.wait_server_state(gw.node_id, "MAINT")

    tab = await new_tab(browser)
    await tab.context.add_init_script(RECORD_SOCKETS)
    page = tab.page
    state = page.get_by_test_id("connection-state")
    try:
        assert await sign_in(page, lb.url, "Alice") == "gw-a"

        # gw-b drains but stays in rotation (its health checks are off, as
        # if the balancer had not noticed yet): every socket it gets is
        # accepted and closed with 1012 before `welcome`.
        lb.set_server_state("gw-b", "ready")
        await lb.wait_server_state("gw-b", "UP")
        assert lb.admin("disable health gateways/gw-b").strip() == ""
        await lb.wait_server_state("gw-b", "no")  # "no check": in rotation, unchecked
        draining.terminate()
        await draining.wait_status_async("/readyz", 503, timeout=5)

        # Alice's gateway leaves rotation and drains: her 1012 sends every
        # reconnect to gw-b.
        lb.set_server_state("gw-a", "maint")
        await lb.wait_server_state("gw-a", "MAINT")
        drained.terminate()
        await expect(state).to_have_attribute("data-state", "reconnecting")

        retries = 4  # waits of at least 0.25 + 0.5 + 1 + 2 s
        log = await wait_sockets(page, 1 + retries, timeout_ms=20_000)
        first, attempts = log[0], log[1 : 1 + retries]
        assert first["welcome"] and first["code"] == 1012, first
        assert all(a["code"] == 1012 and not a["welcome"] for a in attempts), attempts
        previous = [first, *attempts[:-1]]
        waits = [a["openedAt"] - p["closedAt"] for p, a in zip(previous, attempts)]
        floors = [BACKOFF_BASE_MS * 2**n / 2 for n in range(retries)]
        print("waits before each reconnect (ms):", [round(w) for w in waits], "floors:", floors)
        for n, (wait_ms, floor) in enumerate(zip(waits, floors)):
            assert wait_ms >= floor - TIMER_SLACK_MS, f"retry {n + 1} after {wait_ms:.0f} ms < {floor} ms: {waits}"

        # A healthy gateway comes back: the next retry gets `welcome`...
        lb.set_server_state("gw-b", "maint")
        await lb.wait_server_state("gw-b", "MAINT")
        lb.set_server_state("gw-c", "ready")
        await lb.wait_server_state("gw-c", "UP")
        await expect(state).to_have_attribute("data-state", "connected", timeout=20_000)
        assert await served_by(page) == "gw-c"

        # ...and that starts the backoff over: after gw-c's own 1012 the
        # first retry comes within the first step (0.25-0.5 s), not 7.5-15 s
        # later as the sixth attempt would (the bound leaves room for load).
        welcomed = len(await sockets(page))
        healthy.terminate()
        log = await wait_sockets(page, welcomed + 1, timeout_ms=10_000, closed=False)
        last, retry = log[welcomed - 1], log[welcomed]
        assert last["welcome"] and last["code"] == 1012, last
        wait_ms = retry["openedAt"] - last["closedAt"]
        print(f"first retry after a welcome: {wait_ms:.0f} ms")
        assert BACKOFF_BASE_MS / 2 - TIMER_SLACK_MS <= wait_ms < 10 * BACKOFF_BASE_MS, wait_ms
        assert tab.errors == [], tab.errors
    except BaseException:
        print("--- haproxy\n" + lb.output())
        for gw in (drained, draining, healthy):
            print(f"--- {gw.node_id}\n" + gw.output())
        raise
    finally:
        await tab.context.close()


# ------------------------------------------------------------------ ack waiters

HOLD = "held back: "

# Records every pending-message ghost added to the pending list.
RECORD_GHOSTS = """
() => {
  window.__ghosts = [];
  const list = document.querySelector('[data-testid="pending-list"]');
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.dataset && n.dataset.testid === "pending-message") window.__ghosts.push(n.textContent);
    }
  }).observe(list, { childList: true });
}
"""

OUTBOX_SIZES = "() => [switchboard.outbox.unacked.size, switchboard.outbox.ackWaiters.size]"


async def hold_back_live_messages(page: Page) -> None:
    """Route the page's sockets to the real server, dropping the live
    `message` frames of texts starting with HOLD: their publish is acked,
    and the client waits for a message that does not come."""

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "message" and str(frame.get("text", "")).startswith(HOLD):
                return
            ws.send(message)

        server.on_message(from_server)

    await page.route_web_socket(WS_URL, route)


async def expect_sent_ghost(page: Page, text: str) -> None:
    ghost = page.get_by_test_id("pending-message")
    await expect(ghost).to_have_count(1)
    await expect(ghost.locator(".text")).to_have_text(text)
    await expect(ghost.locator(".pending-status")).to_have_text("Sent")


async def test_ack_waiters_are_forgotten_on_leave_and_sign_out(browser: Browser, start_gateway) -> None:
    gateway = start_gateway(NODE_ID="gw-x", **GUEST)
    tab = await new_tab(browser)
    page = tab.page
    await hold_back_live_messages(page)
    try:
        await sign_in(page, gateway.http_url, "Alice")

        # Acked, live message held back: a "Sent" ghost waits for it.
        first = HOLD + "one"
        await type_and_send(page, first)
        await expect_sent_ghost(page, first)
        assert await page.evaluate(OUTBOX_SIZES) == [0, 1]

        # Leave: the waiter goes with the room; rejoining shows the message
        # (from the snapshot) and never the old ghost.
        await page.evaluate(RECORD_GHOSTS)
        await page.get_by_test_id("leave-room").click()
        await expect(page.get_by_test_id("room-list").locator('li[data-room="lobby"]')).to_have_count(0)
        assert await page.evaluate(OUTBOX_SIZES) == [0, 0]
        await page.get_by_test_id("room-input").fill("lobby")
        await page.get_by_test_id("join-room").click()
        await expect_message(page, 1, first)
        await expect(page.get_by_test_id("pending-message")).to_have_count(0)
        assert await page.evaluate("() => window.__ghosts") == []

        # Sign out with a ghost waiting: signing in again (same page, no
        # reload) starts clean.
        second = HOLD + "two"
        await type_and_send(page, second)
        await expect_sent_ghost(page, second)
        assert await page.evaluate(OUTBOX_SIZES) == [0, 1]
        await page.evaluate(RECORD_GHOSTS)
        await page.get_by_test_id("sign-out").click()
        await expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "signed-out")
        assert await page.evaluate(OUTBOX_SIZES) == [0, 0]
        await submit_sign_in(page, "Alice")
        await expect_message(page, 2, second)
        await expect(page.get_by_test_id("pending-message")).to_have_count(0)
        assert await page.evaluate("() => window.__ghosts") == []
        assert await page.evaluate(OUTBOX_SIZES) == [0, 0]
        assert tab.errors == [], tab.errors
    finally:
        await tab.context.close()


# ------------------------------------------------------------------ close codes


async def test_4001_gets_a_new_token_and_4003_does_not_reconnect(browser: Browser, start_gateway) -> None:
    gateway = start_gateway(NODE_ID="gw-x", **GUEST)
    tab = await new_tab(browser)
    page = tab.page
    routes: list[WebSocketRoute] = []
    guest_requests: list[str] = []
    page.on("request", lambda r: guest_requests.append(r.url) if r.url.endswith("/auth/guest") else None)

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        routes.append(ws)

    await page.route_web_socket(WS_URL, route)
    state = page.get_by_test_id("connection-state")
    try:
        await sign_in(page, gateway.http_url, "Alice")
        assert len(routes) == 1 and len(guest_requests) == 1
        first_token = routes[0].url.split("token=", 1)[1]

        # 4001: the token is never used again; a new one is fetched first.
        await routes[0].close(code=4001, reason="token expired")
        await expect(state).to_have_attribute("data-state", "connected")
        assert len(guest_requests) == 2, guest_requests
        assert len(routes) == 2, [r.url for r in routes]
        assert routes[1].url.split("token=", 1)[1] != first_token

        # 4003: no reconnect is scheduled; the notice says why and offers one.
        await routes[1].close(code=4003, reason="banned for spam")
        await expect(state).to_have_attribute("data-state", "kicked")
        await expect(state).to_have_text("removed by the server")
        notice = page.get_by_test_id("notice").filter(has_text="banned for spam")
        await expect(notice).to_contain_text("will not be reconnected")
        assert await page.evaluate("() => switchboard.transport.reconnectTimer") is None
        assert len(routes) == 2
        await expect(page.get_by_test_id("message-input")).to_be_enabled()  # can still read and type

        await notice.get_by_test_id("notice-action").click()
        await expect(state).to_have_attribute("data-state", "connected", timeout=STEP_MS)
        assert len(routes) == 3 and len(guest_requests) == 2
        await type_and_send(page, "back")
        await expect_message(page, 1, "back")
        assert tab.errors == [], tab.errors
    finally:
        await tab.context.close()
