"""The browser client under the gateway's Content-Security-Policy (issue 10,
finding 13): it signs in, connects its WebSocket, renders and sends, and the
page reports no policy violation -- so the policy is strict and the client
still works. System Chromium, one real gateway, a real Redis."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .pages import new_tab, sign_in, type_and_send
from .test_browser_e2e import GATEWAY_ENV

pytestmark = pytest.mark.browser

COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


async def test_the_client_works_under_the_policy(browser, start_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(NODE_ID="gw-csp", **GATEWAY_ENV)
    tab = await new_tab(browser)
    console: list[str] = []
    tab.page.on("console", lambda msg: console.append(msg.text))
    await tab.context.add_init_script(COLLECT_VIOLATIONS)
    try:
        response = await tab.page.goto(gw.http_url + "/")
        assert response is not None
        assert "frame-ancestors 'none'" in (await response.header_value("content-security-policy") or "")
        await sign_in(tab.page, gw.http_url + "/", "Csp Tester")
        await type_and_send(tab.page, "hello under a strict policy")
        item = tab.page.locator('[data-testid="message-list"] [data-testid="message"][data-offset="1"] .text')
        await expect(item).to_have_text("hello under a strict policy")
        violations = await tab.page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert not [line for line in console if "Content Security Policy" in line], console
        assert not tab.errors, tab.errors
    finally:
        await tab.context.close()
