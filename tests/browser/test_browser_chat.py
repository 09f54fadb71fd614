"""Edits, deletions, reactions, read state and direct rooms in the browser
(protocol §11), end to end: system Chromium (Playwright) → two real gateway
processes → one real Redis. Alice's tab is on gw-a, Bob's on gw-b, so every
change crosses the backplane. Everything is done the way a user does it
(buttons, the picker, the keyboard); every wait is a bounded Playwright
expectation, nothing sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from .pages import STEP_MS, expect_message, new_tab, sign_in, type_and_send
from .test_browser_e2e import DOCS_IMG, DOCS_SCREENSHOT_MAX_BYTES, compose_side_by_side

pytestmark = pytest.mark.browser

GUESTS = {"ALLOW_GUESTS": "true"}
XSS = "<img src=x onerror=window.__xss=1>"


def message(page: Page, offset: int) -> Locator:
    return page.locator(f'[data-testid="message-list"] [data-testid="message"][data-offset="{offset}"]')


def chip(page: Page, offset: int, emoji: str) -> Locator:
    return message(page, offset).locator(f'[data-testid="reaction"][data-emoji="{emoji}"]')


def room_item(page: Page, room: str) -> Locator:
    return page.get_by_test_id("room-list").locator(f'li[data-room="{room}"]')


async def send(page: Page, text: str) -> int:
    """Send `text` from the composer; its offset once it shows as a message."""
    await type_and_send(page, text)
    last = page.locator('[data-testid="message-list"] [data-testid="message"]').last
    await expect(last.locator(".text")).to_have_text(text)
    return int(await last.get_attribute("data-offset") or 0)


async def newest_offset(page: Page) -> int:
    offsets = await page.locator('[data-testid="message-list"] [data-testid="message"]').evaluate_all(
        "els => els.map(e => Number(e.dataset.offset))"
    )
    return max(offsets)


async def user_id(page: Page) -> str:
    return await page.evaluate("() => window.switchboard.store.user.id")


async def wait_read_mark(page: Page, room: str, uid: str, offset: int) -> None:
    """Until the `read` events this page got say `uid` has read `room` up to `offset`."""
    await page.wait_for_function(
        "([room, uid, offset]) => (window.switchboard.store.rooms.get(room)?.readBy.get(uid) ?? 0) >= offset",
        arg=[room, uid, offset],
        timeout=STEP_MS,
    )


async def write_docs_screenshot(browser: Browser, shots: list[tuple[str, bytes]], artifacts: Path) -> None:
    """docs/img/two-tabs.png, the README's picture: always as an artifact,
    into docs/ when it is missing or UPDATE_DOCS_SCREENSHOT is set."""
    combined = artifacts / "two-tabs.png"
    await compose_side_by_side(browser, shots, combined)
    size = combined.stat().st_size
    assert size < DOCS_SCREENSHOT_MAX_BYTES, size
    docs_png = DOCS_IMG / "two-tabs.png"
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") or not docs_png.exists():
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        docs_png.write_bytes(combined.read_bytes())


async def test_edit_delete_react_unread_and_a_direct_message_across_two_gateways(
    browser: Browser, start_gateway, artifacts: Path
) -> None:
    gw_a = start_gateway(NODE_ID="gw-a", **GUESTS)
    gw_b = start_gateway(NODE_ID="gw-b", **GUESTS)
    alice_tab, bob_tab = await new_tab(browser), await new_tab(browser)
    alice, bob = alice_tab.page, bob_tab.page
    try:
        assert await sign_in(alice, gw_a.http_url, "Alice") == "gw-a"
        assert await sign_in(bob, gw_b.http_url, "Bob") == "gw-b"
        alice_id, bob_id = await user_id(alice), await user_id(bob)

        # --- edit, from the keyboard: ArrowUp in the empty composer edits
        # the last own message, Enter saves.
        await type_and_send(alice, "Helo everyone")
        await expect_message(bob, 1, "Helo everyone")
        await alice.get_by_test_id("message-input").press("ArrowUp")
        editor = message(alice, 1).get_by_test_id("edit-input")
        await expect(editor).to_be_focused()
        await editor.fill("Hello everyone")
        await editor.press("Enter")
        for page in (alice, bob):
            await expect_message(page, 1, "Hello everyone")
            await expect(message(page, 1).get_by_test_id("edited")).to_have_text("(edited)")
        # Only the author gets edit and delete.
        await expect(message(bob, 1).get_by_test_id("edit-button")).to_have_count(0)
        await expect(message(bob, 1).get_by_test_id("delete-button")).to_have_count(0)

        # --- reactions: Bob picks 👍 from the picker, with the keyboard.
        await message(bob, 1).get_by_test_id("react-button").focus()
        await bob.keyboard.press("Enter")
        picker = bob.get_by_test_id("emoji-picker")
        await expect(picker).to_be_visible()
        await expect(picker.get_by_test_id("emoji-option").first).to_be_focused()
        await bob.keyboard.press("Enter")  # the first one: 👍
        await expect(picker).to_be_hidden()
        for page in (alice, bob):
            await expect(chip(page, 1, "👍").locator(".chip-count")).to_have_text("1")
        await expect(chip(bob, 1, "👍")).to_have_attribute("aria-pressed", "true")
        await expect(chip(alice, 1, "👍")).to_have_attribute("aria-pressed", "false")
        # Alice adds hers by clicking the chip, then takes it back.
        await chip(alice, 1, "👍").click()
        for page in (alice, bob):
            await expect(chip(page, 1, "👍").locator(".chip-count")).to_have_text("2")
        await expect(chip(alice, 1, "👍")).to_have_attribute("aria-pressed", "true")
        await chip(alice, 1, "👍").click()
        for page in (alice, bob):
            await expect(chip(page, 1, "👍").locator(".chip-count")).to_have_text("1")
        # A second emoji from the picker, by mouse.
        await message(alice, 1).hover()
        await message(alice, 1).get_by_test_id("react-button").click()
        await alice.get_by_test_id("emoji-picker").locator('[data-emoji="🎉"]').click()
        for page in (alice, bob):
            await expect(chip(page, 1, "🎉").locator(".chip-count")).to_have_text("1")

        # --- delete, with the inline confirmation.
        oops = await send(bob, "oops, wrong room")
        await expect_message(alice, oops, "oops, wrong room")
        await message(bob, oops).hover()
        await message(bob, oops).get_by_test_id("delete-button").click()
        await message(bob, oops).get_by_test_id("delete-confirm").click()
        for page in (alice, bob):
            await expect(message(page, oops).get_by_test_id("deleted")).to_have_text("message deleted")
            await expect(message(page, oops).get_by_test_id("react-button")).to_have_count(0)

        # --- unread: Bob reads #lobby, goes to #general (guests may join lobby, general, random); Alice posts twice.
        # (Alice hears Bob's read mark: it has reached the server.)
        await wait_read_mark(alice, "lobby", bob_id, await newest_offset(bob))
        await bob.get_by_test_id("room-input").fill("general")
        await bob.get_by_test_id("join-room").click()
        await expect(bob.get_by_test_id("room-title")).to_have_text("#general")
        first_unread = await send(alice, "Bob, are you there?")
        await send(alice, "There's cake in the kitchen.")
        await expect(room_item(bob, "lobby").get_by_test_id("unread")).to_have_text("2")
        # The count is the server's too: it survives a reload.
        await bob.reload()
        await expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
        await expect(bob.get_by_test_id("room-title")).to_have_text("#general")
        await expect(room_item(bob, "lobby").get_by_test_id("unread")).to_have_text("2")
        # Opening the room: the divider sits above the first unread message.
        await room_item(bob, "lobby").get_by_role("button").click()
        divider = bob.get_by_test_id("new-divider")
        await expect(divider).to_have_text("New messages")
        following = divider.locator('xpath=following-sibling::li[@data-testid="message"][1]')
        await expect(following).to_have_attribute("data-offset", str(first_unread))
        await expect(room_item(bob, "lobby").get_by_test_id("unread")).to_have_count(0)
        await bob.screenshot(path=str(artifacts / "chat-unread-divider.png"))

        # --- a direct room, started from the member list on each side.
        dm = "dm:" + "+".join(sorted([alice_id, bob_id]))
        await alice.get_by_test_id("presence-list").get_by_test_id("member-dm").filter(has_text="Bob").click()
        await expect(alice.get_by_test_id("room-title")).to_have_text("@Bob")
        await expect(room_item(alice, dm)).to_contain_text("Bob")
        await bob.get_by_test_id("presence-list").get_by_test_id("member-dm").filter(has_text="Alice").click()
        await expect(bob.get_by_test_id("room-title")).to_have_text("@Alice")
        await expect(room_item(bob, dm)).to_be_visible()
        await type_and_send(alice, "psst, a secret")
        await expect_message(bob, 1, "psst, a secret")
        # Bob has it on screen: his read mark reaches Alice as "Seen".
        await expect(message(alice, 1).get_by_test_id("seen")).to_have_text("Seen")
        await expect(alice.get_by_test_id("seen")).to_have_count(1)
        await type_and_send(bob, "Ooh, tell me.")
        await expect_message(alice, 2, "Ooh, tell me.")
        await expect(message(bob, 2).get_by_test_id("seen")).to_have_text("Seen")
        await alice.screenshot(path=str(artifacts / "chat-direct-seen.png"))

        # --- the README picture: Alice in the direct room ("Seen", and an
        # unread badge on #lobby), Bob in #lobby with the actions of his own
        # message under the pointer.
        await room_item(bob, "lobby").get_by_role("button").click()
        mine = await send(bob, "On my way! Save me a slice.")
        await expect(room_item(alice, "lobby").get_by_test_id("unread")).to_have_text("1")
        await alice.get_by_test_id("message-input").fill("See you there")
        await message(bob, mine).hover()
        await expect(message(bob, mine).locator(".msg-actions")).to_have_css("opacity", "1")
        await write_docs_screenshot(
            browser,
            [("Tab 1 · Alice · served by gw-a", await alice.screenshot()),
             ("Tab 2 · Bob · served by gw-b", await bob.screenshot())],
            artifacts,
        )
        await alice.get_by_test_id("message-input").fill("")

        # --- user text stays text, in edits too.
        await room_item(alice, "lobby").get_by_role("button").click()
        harmless = await send(alice, "harmless")
        await alice.get_by_test_id("message-input").press("ArrowUp")
        await message(alice, harmless).get_by_test_id("edit-input").fill(XSS)
        await message(alice, harmless).get_by_test_id("edit-save").click()
        for page in (alice, bob):
            await expect_message(page, harmless, XSS)
            assert await page.locator("img").count() == 0
            assert await page.evaluate("() => typeof window.__xss") == "undefined"

        assert alice_tab.errors == [] and bob_tab.errors == [], (alice_tab.errors, bob_tab.errors)
    except BaseException:
        for name, page in (("alice", alice), ("bob", bob)):
            try:
                await page.screenshot(path=str(artifacts / f"chat-{name}-failure.png"), timeout=3000)
            except Exception:  # best-effort evidence
                pass
        for gw in (gw_a, gw_b):
            print(f"--- {gw.node_id}\n" + gw.output())
        raise
    finally:
        await alice_tab.context.close()
        await bob_tab.context.close()
