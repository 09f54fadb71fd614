"""Page helpers shared by the browser tests: one browser context per user,
guest sign-in, sending and expecting messages. Every wait is a Playwright
expectation with a bound; nothing sleeps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from playwright.async_api import Browser, BrowserContext, Page, expect

STEP_MS = 10_000  # one UI step
VIEWPORT = {"width": 700, "height": 600}
SERVED_BY = re.compile(r"^served by \S+$")


@dataclass
class Tab:
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page


async def new_tab(browser: Browser) -> Tab:
    """A separate browser context per user: own sessionStorage, own sockets."""
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1, color_scheme="light")
    context.set_default_timeout(STEP_MS)
    tab = Tab(context, await context.new_page())
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


async def sign_in(page: Page, url: str, name: str) -> str:
    """Load the client and sign in as a guest; returns the node from the
    badge once connected in lobby."""
    await page.goto(url)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "signed-out")
    return await submit_sign_in(page, name)


async def submit_sign_in(page: Page, name: str) -> str:
    """Sign in on the page as it is (no reload); returns the node."""
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("sign-in").click()
    state = page.get_by_test_id("connection-state")
    await expect(state).to_have_attribute("data-state", "connected", timeout=STEP_MS)
    await expect(state).to_have_text("connected")
    await expect(page.get_by_test_id("room-list").locator('li[data-room="lobby"]')).to_be_visible()
    return await served_by(page)


async def served_by(page: Page) -> str:
    badge = page.get_by_test_id("node-badge")
    await expect(badge).to_have_text(SERVED_BY, timeout=STEP_MS)
    text = (await badge.text_content() or "").strip()
    return text.removeprefix("served by ").strip()


async def type_and_send(page: Page, text: str) -> None:
    box = page.get_by_test_id("message-input")
    await box.fill(text)
    await page.get_by_test_id("send").click()
    await expect(box).to_have_value("")


async def expect_message(page: Page, offset: int, text: str, timeout: int = STEP_MS) -> None:
    item = page.locator(f'[data-testid="message-list"] [data-testid="message"][data-offset="{offset}"]')
    await expect(item.locator(".text")).to_have_text(text, timeout=timeout)
