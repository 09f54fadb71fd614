"""Big-room presence in the browser client (protocol, Big rooms): the sidebar
shows the exact member count and, when the list is a capped sample, "showing
N of M". System Chromium (Playwright) against two real gateway processes on
one real Redis, with tiny thresholds so five users make a "big" room:
PRESENCE_LIST_MAX=2 (lists), PRESENCE_EVENTS_MAX=2 (names up to 2 users,
``presence_count`` above).

Alice's tab is on gw-a, Bob's on gw-b; the other users are protocol clients
spread over both gateways, so every count crosses the backplane. Every wait
is a bounded Playwright expectation; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.async_api import Browser, Page, expect

from switchboard.client import Client

from .pages import STEP_MS, new_tab, sign_in

pytestmark = pytest.mark.browser

BIG = {"ALLOW_GUESTS": "true", "PRESENCE_LIST_MAX": 2, "PRESENCE_EVENTS_MAX": 2}
# presence_count is sent at most once per second per room; a little slack on top of a step.
COUNT_MS = STEP_MS + 2_000


async def expect_presence(page: Page, count: int, names: list[str] | int, showing: str | None) -> None:
    """The sidebar: the count badge, the listed names (own first; or only how
    many, for a sample the server picks) and the "showing N of M" line (None:
    hidden, everyone is listed)."""
    await expect(page.get_by_test_id("presence-count")).to_have_text(str(count), timeout=COUNT_MS)
    members = page.get_by_test_id("presence-list").get_by_test_id("member")
    if isinstance(names, int):
        await expect(members).to_have_count(names)
    else:
        await expect(members.locator(".member-name")).to_have_text(names)
    more = page.get_by_test_id("presence-more")
    if showing is None:
        await expect(more).to_be_hidden()
    else:
        await expect(more).to_be_visible()
        await expect(page.get_by_test_id("presence-more-text")).to_have_text(showing)


async def test_member_count_and_capped_list_across_two_gateways(
    browser: Browser, start_gateway, token: Callable[..., str], artifacts
) -> None:
    gw_a = start_gateway(NODE_ID="gw-a", **BIG)
    gw_b = start_gateway(NODE_ID="gw-b", **BIG)
    alice_tab, bob_tab = await new_tab(browser), await new_tab(browser)
    alice, bob = alice_tab.page, bob_tab.page
    others: dict[str, Client] = {}
    try:
        assert await sign_in(alice, gw_a.http_url, "Alice") == "gw-a"
        await expect_presence(alice, 1, ["Alice"], None)
        assert await sign_in(bob, gw_b.http_url, "Bob") == "gw-b"
        # Two users: at the event threshold, so names still arrive (presence_join).
        await expect_presence(alice, 2, ["Alice", "Bob"], None)
        await expect_presence(bob, 2, ["Bob", "Alice"], None)

        # A third user crosses PRESENCE_EVENTS_MAX: counts only, no names.
        for name, gateway in (("carol", gw_a), ("dave", gw_b), ("erin", gw_a)):
            client = await Client.connect(gateway.ws_url, token(name, name=name.title()))
            others[name] = client
            joined = await client.join("lobby")
            assert joined["presence_count"] == 3 + len(others) - 1, joined
            assert len(joined["presence"]) <= 2  # the capped list
        # Which two are listed is the server's choice (the client may have
        # asked again while the count grew).
        for page in (alice, bob):
            await expect_presence(page, 5, 2, "showing 2 of 5")

        # A fresh list is still a capped sample: the joiner's own `joined` and
        # a `presence` request both carry the exact count.
        await alice.reload()
        await expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
        await expect_presence(alice, 5, 2, "showing 2 of 5")
        await expect(alice.get_by_test_id("presence-list").locator(".member.me")).to_have_count(1)  # the joiner
        await bob.get_by_test_id("presence-refresh").click()
        await expect_presence(bob, 5, 2, "showing 2 of 5")
        await alice.screenshot(path=str(artifacts / "presence-big-room.png"))

        # Leaving above the threshold: counts again.
        await others.pop("erin").close()
        for page in (alice, bob):
            await expect(page.get_by_test_id("presence-count")).to_have_text("4", timeout=COUNT_MS)
            await expect(page.get_by_test_id("presence-more-text")).to_have_text("showing 2 of 4")
        # Back at the threshold: presence_leave carries the count again and
        # everyone present is listed.
        await others.pop("dave").close()
        await others.pop("carol").close()
        await expect_presence(bob, 2, ["Bob", "Alice"], None)
        await expect_presence(alice, 2, ["Alice", "Bob"], None)

        # Bob leaves the room: a named leave with its count.
        await bob.get_by_test_id("leave-room").click()
        await expect_presence(alice, 1, ["Alice"], None)
        assert alice_tab.errors == [] and bob_tab.errors == [], (alice_tab.errors, bob_tab.errors)
    finally:
        for client in others.values():
            await client.close()
        await alice_tab.context.close()
        await bob_tab.context.close()
