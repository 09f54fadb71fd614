"""The browser client with the application backend, end to end against a real
gateway (no injected frames):

- a guest's short-lived token is renewed before it expires and handed to the
  open socket (``refresh``): the socket outlives the first token, same guest;
- the user control API's disconnect closes the page's socket with 4003: the
  page says why and does not reconnect by itself.
"""

from __future__ import annotations

import httpx
import jwt
import pytest
from playwright.async_api import Browser, expect

from .pages import STEP_MS, expect_message, new_tab, sign_in, type_and_send

pytestmark = pytest.mark.browser

GUEST_TTL_S = 6  # renewed about 1.2 s before it runs out (a fifth of what is left)

COUNT_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__opened = 0;
  window.WebSocket = class extends Native {
    constructor(url, protocols) { super(url, protocols); window.__opened++; }
  };
})();
"""


async def test_a_guest_token_is_renewed_on_the_open_socket(browser: Browser, start_gateway) -> None:
    gateway = start_gateway(ALLOW_GUESTS="true", GUEST_TOKEN_TTL=GUEST_TTL_S)
    tab = await new_tab(browser)
    page = tab.page
    await page.add_init_script(COUNT_SOCKETS)
    renewals: list[str] = []
    page.on("request", lambda r: renewals.append(r.url) if r.url.endswith("/auth/guest/refresh") else None)
    try:
        await sign_in(page, gateway.http_url, "Renée")
        first = await page.evaluate("() => ({ token: switchboard.store.token, user: switchboard.store.user.id })")
        # The renewed token replaces the stored one, for the same guest.
        await page.wait_for_function(
            "(old) => switchboard.store.token !== old", arg=first["token"], timeout=GUEST_TTL_S * 1000 + STEP_MS
        )
        assert await page.evaluate("() => switchboard.store.user.id") == first["user"]
        assert len(renewals) >= 1
        # Past the first token's expiry (by the page's clock), on the same socket.
        await page.wait_for_function(
            "(ms) => Date.now() > ms", arg=exp_of(first["token"]) * 1000 + 500, timeout=STEP_MS
        )
        state = page.get_by_test_id("connection-state")
        await expect(state).to_have_attribute("data-state", "connected")
        assert await page.evaluate("() => window.__opened") == 1
        await type_and_send(page, "still the same socket")
        await expect_message(page, 1, "still the same socket")
        assert tab.errors == [], tab.errors
    finally:
        await tab.context.close()


def exp_of(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


async def test_a_disconnect_from_the_api_shows_the_reason_and_does_not_reconnect(
    browser: Browser, start_gateway, api_key
) -> None:
    gateway = start_gateway(ALLOW_GUESTS="true")
    tab = await new_tab(browser)
    page = tab.page
    await page.add_init_script(COUNT_SOCKETS)
    try:
        await sign_in(page, gateway.http_url, "Spammer")
        user = await page.evaluate("() => switchboard.store.user.id")
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
            response = await http.post(
                f"/api/users/{user}/disconnect",
                json={"reason": "kicked for spam", "ban_seconds": 60},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            assert response.status_code == 200, response.text
        state = page.get_by_test_id("connection-state")
        await expect(state).to_have_attribute("data-state", "kicked")
        notice = page.get_by_test_id("notice").filter(has_text="kicked for spam")
        await expect(notice).to_contain_text("will not be reconnected")
        assert await page.evaluate("() => switchboard.transport.reconnectTimer") is None
        assert await page.evaluate("() => window.__opened") == 1
        assert tab.errors == [], tab.errors
    finally:
        await tab.context.close()
