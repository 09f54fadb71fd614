"""Direct rooms the other user opened, in the browser (our addition to
protocol §11): system Chromium (Playwright) → two real gateway processes →
one real Redis. Alice's tab is on gw-a, Bob's on gw-b. Bob sees Alice's new
direct room appear with an unread badge without clicking anything (a live
``direct`` frame), finds it again after a reload that forgot it (the
``directs`` list), and Alice's "Seen" survives her reload (``peer_read`` in
``joined``). Every wait is a bounded Playwright expectation.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

from .pages import expect_message, new_tab, sign_in, type_and_send

pytestmark = pytest.mark.browser

GUESTS = {"ALLOW_GUESTS": "true"}


def room_item(page: Page, room: str) -> Locator:
    return page.get_by_test_id("room-list").locator(f'li[data-room="{room}"]')


def message(page: Page, offset: int) -> Locator:
    return page.locator(f'[data-testid="message-list"] [data-testid="message"][data-offset="{offset}"]')


async def user_id(page: Page) -> str:
    return await page.evaluate("() => window.switchboard.store.user.id")


async def test_a_new_direct_room_appears_with_a_badge_and_seen_survives_a_reload(browser, start_gateway) -> None:  # type: ignore[no-untyped-def]
    gw_a = start_gateway(NODE_ID="gw-a", **GUESTS)
    gw_b = start_gateway(NODE_ID="gw-b", **GUESTS)
    alice_tab, bob_tab = await new_tab(browser), await new_tab(browser)
    alice, bob = alice_tab.page, bob_tab.page
    try:
        assert await sign_in(alice, gw_a.http_url, "Alice") == "gw-a"
        assert await sign_in(bob, gw_b.http_url, "Bob") == "gw-b"
        dm = "dm:" + "+".join(sorted([await user_id(alice), await user_id(bob)]))

        # Alice opens the direct room from the member list and writes; Bob clicks nothing.
        await alice.get_by_test_id("presence-list").get_by_test_id("member-dm").filter(has_text="Bob").click()
        await expect(alice.get_by_test_id("room-title")).to_have_text("@Bob")
        await type_and_send(alice, "psst, Bob")
        await expect(room_item(bob, dm).get_by_test_id("unread")).to_have_text("1")
        await expect(room_item(bob, dm)).to_contain_text("Alice")
        await expect(bob.get_by_test_id("room-title")).to_contain_text("lobby")  # still where he was

        # Bob opens it and reads: Alice sees "Seen", live.
        await room_item(bob, dm).get_by_role("button").click()
        await expect_message(bob, 1, "psst, Bob")
        await expect(room_item(bob, dm).get_by_test_id("unread")).to_have_count(0)
        await expect(message(alice, 1).get_by_test_id("seen")).to_have_text("Seen")

        # Alice reloads: no `read` event will come again, `joined.peer_read` brings "Seen" back.
        await alice.reload()
        await expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
        await expect_message(alice, 1, "psst, Bob")
        await expect(message(alice, 1).get_by_test_id("seen")).to_have_text("Seen")

        # Bob's tab forgets the room (as a new tab would) and reloads: the
        # server's `directs` list brings it back, joined, so Alice's next
        # message shows as unread.
        await room_item(bob, "lobby").get_by_role("button").click()
        await bob.evaluate(
            """() => { sessionStorage.setItem("switchboard.rooms", JSON.stringify(["lobby"]));
                      sessionStorage.setItem("switchboard.current", JSON.stringify("lobby")); }"""
        )
        await bob.reload()
        await expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
        await expect(room_item(bob, dm)).to_contain_text("Alice")
        await bob.wait_for_function(
            "(room) => window.switchboard.store.rooms.get(room)?.loaded === true", arg=dm
        )
        await type_and_send(alice, "still there?")
        await expect(room_item(bob, dm).get_by_test_id("unread")).to_have_text("1")
        assert alice_tab.errors == [] and bob_tab.errors == []
    finally:
        await alice_tab.context.close()
        await bob_tab.context.close()
