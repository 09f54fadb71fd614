"""The browser client end to end: system Chromium (Playwright, async API) →
a real HAProxy → two real gateway processes → a real Redis.

Two tabs (Alice, Bob) sign in as guests and land on different gateways
(``balance leastconn``: Alice's socket is open before Bob's page loads, so
Bob's socket goes to the emptier gateway). They chat both ways, see each
other's presence and typing. Then Alice's gateway is drained (SIGTERM) while
the other gateway is in MAINT on the load balancer: Alice has nowhere to
reconnect to, so the outage is certain rather than a race; Bob, whose tunnel
survives MAINT, sends three messages during it. When the surviving gateway
is put back in rotation, Alice reconnects to it, resumes with ``since`` and
shows every message exactly once.

Every step waits on a condition with a bound (Playwright's expect timeouts
or a polled deadline); nothing sleeps.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from switchboard_harness import GatewayProcess

from .pages import STEP_MS, expect_message, new_tab, sign_in, type_and_send

pytestmark = pytest.mark.browser

RECONNECT_MS = 25_000  # the client's backoff after a few failed attempts (×2 each, capped at 15 s)
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DOCS_SCREENSHOT_MAX_BYTES = 300 * 1024
GATEWAY_ENV = {"ALLOW_GUESTS": "true", "DRAIN_NOTICE": "0.5", "DRAIN_TIMEOUT": "3"}


# ------------------------------------------------------------------ helpers


async def shown_messages(page: Page) -> list[tuple[int, str]]:
    return await page.locator('[data-testid="message-list"] [data-testid="message"]').evaluate_all(
        "els => els.map(e => [Number(e.dataset.offset), e.querySelector('.text').textContent])"
    )


async def assert_log(page: Page, sent: list[str]) -> None:
    """Exactly the sent texts, offsets unique and contiguous from 1, no
    leftover pending ghosts."""
    messages = page.locator('[data-testid="message-list"] [data-testid="message"]')
    await expect(messages).to_have_count(len(sent))
    await expect(page.get_by_test_id("pending-message")).to_have_count(0)
    shown = await shown_messages(page)
    offsets = [offset for offset, _ in shown]
    assert len(set(offsets)) == len(offsets), f"duplicate offsets: {shown}"
    assert offsets == list(range(1, len(sent) + 1)), shown
    assert [text for _, text in shown] == sent, shown


async def expect_members(page: Page, names: list[str]) -> None:
    members = page.get_by_test_id("presence-list").get_by_test_id("member")
    await expect(members.locator(".member-name")).to_have_text(names, timeout=STEP_MS)


async def compose_side_by_side(browser: Browser, shots: list[tuple[str, bytes]], path: Path) -> None:
    """One PNG of the tabs side by side: an HTML page of <img> tags,
    screenshotted by the same Chromium (no image library needed)."""
    figures = "".join(
        f'<figure><figcaption>{html.escape(caption)}</figcaption>'
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" width="700" height="600"></figure>'
        for caption, png in shots
    )
    page_html = f"""<!doctype html><html><head><meta charset="utf-8"><style>
      body {{ margin: 0; background: #dfe3ea; font: 15px/1.3 system-ui, sans-serif; }}
      #frame {{ display: inline-flex; gap: 20px; padding: 20px; background: #dfe3ea; }}
      figure {{ margin: 0; }}
      figcaption {{ color: #3b4252; font-weight: 600; margin: 0 0 8px 4px; }}
      img {{ display: block; border-radius: 10px; box-shadow: 0 4px 18px rgba(0,0,0,.18); }}
    </style></head><body><div id="frame">{figures}</div></body></html>"""
    context = await browser.new_context(
        viewport={"width": 700 * len(shots) + 20 * (len(shots) + 1), "height": 680}, device_scale_factor=1
    )
    try:
        page = await context.new_page()
        await page.set_content(page_html)
        await page.locator("#frame").screenshot(path=str(path))
    finally:
        await context.close()


def gateway_pair(start_gateway) -> dict[str, GatewayProcess]:
    return {node: start_gateway(NODE_ID=node, **GATEWAY_ENV) for node in ("gw-a", "gw-b")}


# ------------------------------------------------------------------ tests


async def test_two_tabs_chat_across_gateways_and_survive_a_drain(
    browser: Browser, start_gateway, start_haproxy, artifacts: Path
) -> None:
    for stale in artifacts.glob("drain-*-failure.png"):
        stale.unlink()
    gateways = gateway_pair(start_gateway)
    lb = start_haproxy(list(gateways.values()))

    alice_tab, bob_tab = await new_tab(browser), await new_tab(browser)
    alice, bob = alice_tab.page, bob_tab.page
    try:
        # --- sign in: Alice's socket is open before Bob's page loads, so
        # leastconn sends Bob to the other gateway.
        alice_node = await sign_in(alice, lb.url, "Alice")
        bob_node = await sign_in(bob, lb.url, "Bob")
        assert {alice_node, bob_node} == set(gateways), (alice_node, bob_node)
        assert alice_node != bob_node
        await expect_members(alice, ["Alice", "Bob"])  # own entry first, then by name
        await expect_members(bob, ["Bob", "Alice"])

        sent: list[str] = []

        # --- Alice → Bob, with Bob seeing Alice type first.
        text = f"Hi Bob! I'm on {alice_node}."
        await alice.get_by_test_id("message-input").fill(text)
        await expect(bob.get_by_test_id("typing")).to_have_text("Alice is typing…")
        await alice.get_by_test_id("send").click()
        sent.append(text)
        await expect_message(bob, 1, text)
        await expect_message(alice, 1, text)
        await expect(bob.get_by_test_id("typing")).to_have_text("")  # her message clears it

        # --- Bob → Alice, with Alice seeing Bob type first.
        text = f"Hey Alice, {bob_node} here. Different gateway, same room."
        await bob.get_by_test_id("message-input").fill(text)
        await expect(alice.get_by_test_id("typing")).to_have_text("Bob is typing…")
        await bob.get_by_test_id("send").click()
        sent.append(text)
        await expect_message(alice, 2, text)
        await expect_message(bob, 2, text)

        # --- Alice starts typing the next one: the side-by-side picture shows
        # two gateways, both messages and the typing indicator.
        text = "Let's see what happens when my gateway restarts…"
        await alice.get_by_test_id("message-input").fill(text)
        await expect(bob.get_by_test_id("typing")).to_have_text("Alice is typing…")
        alice_png = await alice.screenshot(path=str(artifacts / "alice-before-drain.png"))
        bob_png = await bob.screenshot(path=str(artifacts / "bob-before-drain.png"))
        combined = artifacts / "two-tabs-drain.png"
        await compose_side_by_side(
            browser,
            [(f"Tab 1 · Alice · served by {alice_node}", alice_png), (f"Tab 2 · Bob · served by {bob_node}", bob_png)],
            combined,
        )
        # (The README's docs/img/two-tabs.png comes from test_browser_chat.py, which shows more.)
        assert combined.stat().st_size < DOCS_SCREENSHOT_MAX_BYTES, combined.stat().st_size
        await alice.get_by_test_id("send").click()
        sent.append(text)
        await expect_message(bob, 3, text)
        await expect_message(alice, 3, text)

        # --- the outage: Bob's gateway leaves rotation (MAINT: his open
        # tunnel stays), then Alice's gateway drains. Alice gets 1012 and her
        # reconnects find no server until Bob's gateway is back.
        lb.set_server_state(bob_node, "maint")
        await lb.wait_server_state(bob_node, "MAINT")
        draining = gateways[alice_node]
        draining.terminate()
        alice_state = alice.get_by_test_id("connection-state")
        await expect(alice_state).to_have_attribute("data-state", "reconnecting", timeout=STEP_MS)
        await expect(alice_state).to_contain_text("reconnecting…")
        # Gone within DRAIN_TIMEOUT (3 s) plus slack, with a clean exit.
        assert await draining.wait_async(timeout=6) == 0, draining.output()
        await lb.wait_server_state(alice_node, "DOWN")
        # Closing the sockets removed Alice's presence cluster-wide at once.
        await expect_members(bob, ["Bob"])
        await expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")

        outage = [f"While you were away #{i}" for i in (1, 2, 3)]
        for text in outage:
            await type_and_send(bob, text)
            sent.append(text)
            await expect_message(bob, len(sent), text)
        # Still down on Alice's side: these arrive only by recovery.
        await expect(alice_state).to_have_attribute("data-state", "reconnecting")
        await expect(alice.locator('[data-testid="message-list"] [data-testid="message"]')).to_have_count(3)
        await alice.screenshot(path=str(artifacts / "alice-reconnecting.png"))

        # --- back in rotation: Alice reconnects to the surviving gateway and
        # resumes with `since`.
        lb.set_server_state(bob_node, "ready")
        await lb.wait_server_state(bob_node, "UP")
        await expect(alice_state).to_have_attribute("data-state", "connected", timeout=RECONNECT_MS)
        await expect(alice_state).to_have_text("connected")
        await expect(alice.get_by_test_id("node-badge")).to_have_text(f"served by {bob_node}")
        for offset, text in enumerate(outage, start=4):
            await expect_message(alice, offset, text)
        await assert_log(alice, sent)
        # Resumed (`recovered: true`), not reloaded: no "Reloaded #lobby" notice.
        await expect(alice.get_by_test_id("notice").filter(has_text="Reloaded")).to_have_count(0)
        await expect_members(alice, ["Alice", "Bob"])
        await expect_members(bob, ["Bob", "Alice"])

        # --- and the conversation goes on, both ways.
        text = f"Back, now on {bob_node} as well. Missed nothing."
        await type_and_send(alice, text)
        sent.append(text)
        await expect_message(bob, len(sent), text)
        text = "Welcome back!"
        await type_and_send(bob, text)
        sent.append(text)
        await expect_message(alice, len(sent), text)
        await assert_log(alice, sent)
        await assert_log(bob, sent)
        await expect(bob.get_by_test_id("node-badge")).to_have_text(f"served by {bob_node}")

        await alice.screenshot(path=str(artifacts / "alice-after-reconnect.png"))
        await bob.screenshot(path=str(artifacts / "bob-after-reconnect.png"))
        assert alice_tab.errors == [] and bob_tab.errors == [], (alice_tab.errors, bob_tab.errors)
    except BaseException:
        for name, page in (("alice", alice), ("bob", bob)):
            try:
                await page.screenshot(path=str(artifacts / f"drain-{name}-failure.png"), timeout=3000)
            except Exception:  # noqa: BLE001 - best-effort evidence
                pass
        print("--- haproxy\n" + lb.output())
        for gw in gateways.values():
            print(f"--- {gw.node_id}\n" + gw.output())
        raise
    finally:
        await alice_tab.context.close()
        await bob_tab.context.close()


XSS = "<img src=x onerror=window.__xss=1>"


async def test_message_html_renders_as_literal_text(browser: Browser, start_gateway, artifacts: Path) -> None:
    gateway = start_gateway(NODE_ID="gw-x", ALLOW_GUESTS="true")
    alice_tab, bob_tab = await new_tab(browser), await new_tab(browser)
    alice, bob = alice_tab.page, bob_tab.page
    requested: list[str] = []
    for page in (alice, bob):
        page.on("request", lambda request: requested.append(request.url))
    try:
        await sign_in(alice, gateway.http_url, "Alice")
        await sign_in(bob, gateway.http_url, "Bob")
        await type_and_send(alice, XSS)
        for page in (alice, bob):  # the sender's and a receiver's rendering
            await expect_message(page, 1, XSS)
            assert await page.locator('[data-testid="message-list"] img').count() == 0
            assert await page.locator("img").count() == 0
            assert await page.evaluate("() => typeof window.__xss") == "undefined"
        # Had the markup been parsed, the browser would have fetched "x".
        assert not [url for url in requested if url.rstrip("/").endswith("/x")], requested
        await alice.screenshot(path=str(artifacts / "xss-literal.png"))
        assert alice_tab.errors == [] and bob_tab.errors == [], (alice_tab.errors, bob_tab.errors)
    finally:
        await alice_tab.context.close()
        await bob_tab.context.close()
