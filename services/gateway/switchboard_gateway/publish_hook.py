"""The publish hook (docs/protocol.md "Publish hook"): the application sees
every message before anyone else and accepts it, replaces its text, or
rejects it.

``PublishHook.moderate`` is the one entry point: a publish calls it (and an
edit calls it the same way, ``action="edit"``) and stores what it returns.
The request is ``POST PUBLISH_HOOK_URL`` with ``{"action","room","user",
"text","client_msg_id"}`` (``"target"`` too for an edit), signed like a
webhook delivery (``switchboard.signing``). Answers:

- 2xx with ``{}`` (or no body): accepted as is; ``{"text": "..."}``: accepted
  with that text (1..MAX_TEXT_CHARS characters);
- 4xx ``{"error","message"}``: ``HookRejected`` -> ``rejected`` with that message;
- a timeout (HOOK_TIMEOUT, the whole exchange), a 5xx, any other status, an
  unreadable 2xx answer or an unreachable hook: ``HookUnavailable`` ->
  ``unavailable``. Nothing is stored in either case, so a client retrying
  with the same ``client_msg_id`` is safe.

One pooled ``httpx.AsyncClient`` per gateway process, opened at start and
closed at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from switchboard.protocol import frames
from switchboard.signing import signed_headers
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.settings import Settings

log = logging.getLogger("switchboard.hook")

# Answers are small JSON objects; anything bigger is not one.
ANSWER_MAX_BYTES = 64 * 1024
REJECT_MESSAGE_MAX_CHARS = 500
# Concurrent hook requests per gateway; beyond that, publishes wait for a
# pooled connection (within HOOK_TIMEOUT).
POOL_CONNECTIONS = 100


class HookRejected(Exception):
    """The application refused the message; ``message`` says why (shown to the user)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HookUnavailable(Exception):
    """No usable answer from the hook (timeout, 5xx, unreachable); nothing was stored."""


class PublishHook:
    def __init__(self, url: str, secret: str, timeout_s: float, max_text_chars: int, metrics: Metrics | None = None):
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._max_text_chars = max_text_chars
        self._metrics = metrics
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                limits=httpx.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS),
                follow_redirects=False,
                trust_env=False,  # the hook is the app's own endpoint: no proxy settings from the environment
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def moderate(
        self,
        room: str,
        user: frames.User,
        text: str,
        client_msg_id: str | None = None,
        *,
        action: str = "publish",
        target: int | None = None,
    ) -> str:
        """The text to store (the original or the app's replacement), or
        ``HookRejected`` / ``HookUnavailable``."""
        request: dict[str, Any] = {
            "action": action,
            "room": room,
            "user": {"id": user.id, "name": user.name},
            "text": text,
            "client_msg_id": client_msg_id,
        }
        if target is not None:
            request["target"] = target
        outcome = "unavailable"
        try:
            status, answer = await self._post(json.dumps(request, separators=(",", ":")).encode())
            replacement = self._verdict(status, answer)
            outcome = "accepted" if replacement is None else "replaced"
            return text if replacement is None else replacement
        except HookRejected:
            outcome = "rejected"
            raise
        finally:
            if self._metrics is not None:
                self._metrics.hook_calls.labels(outcome=outcome).inc()

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        client = self._client
        if client is None:
            raise HookUnavailable("the publish hook is not started")
        headers = {"Content-Type": "application/json", **signed_headers(self._secret, body)}
        try:
            # httpx's timeout applies per phase (connect, write, each read):
            # the deadline bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                async with client.stream("POST", self.url, content=body, headers=headers) as response:
                    answer = b""
                    async for chunk in response.aiter_bytes():
                        answer += chunk
                        if len(answer) > ANSWER_MAX_BYTES:
                            raise HookUnavailable(f"the publish hook answered more than {ANSWER_MAX_BYTES} bytes")
                    return response.status_code, answer
        except TimeoutError:
            raise HookUnavailable(f"the publish hook did not answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise HookUnavailable(f"the publish hook is unreachable ({type(exc).__name__})") from None

    def _verdict(self, status: int, answer: bytes) -> str | None:
        """None to accept as is, the replacement text, or an exception."""
        if 200 <= status < 300:
            if not answer.strip():
                return None
            try:
                decoded = json.loads(answer)
            except ValueError:
                raise HookUnavailable("the publish hook answered something that is not JSON") from None
            if not isinstance(decoded, dict):
                raise HookUnavailable("the publish hook answered JSON that is not an object")
            replacement = decoded.get("text")
            if replacement is None:
                return None
            if not isinstance(replacement, str) or not 1 <= len(replacement) <= self._max_text_chars:
                log.warning("the publish hook replaced a text with something unusable (%r)", type(replacement))
                raise HookUnavailable(f"the publish hook's text must be a string of 1-{self._max_text_chars} characters")
            return replacement
        if 400 <= status < 500:
            raise HookRejected(_reject_message(answer))
        raise HookUnavailable(f"the publish hook answered HTTP {status}")


def _reject_message(answer: bytes) -> str:
    try:
        decoded = json.loads(answer)
    except ValueError:
        decoded = None
    message = decoded.get("message") if isinstance(decoded, dict) else None
    if not isinstance(message, str) or not message.strip():
        return "the message was rejected"
    return message.strip()[:REJECT_MESSAGE_MAX_CHARS]


def hook_from_settings(settings: Settings, metrics: Metrics | None = None) -> PublishHook | None:
    """The gateway's hook, or None when PUBLISH_HOOK_URL is not set (then
    publishing costs nothing more)."""
    if settings.publish_hook_url is None:
        return None
    assert settings.webhook_secret is not None  # Settings.from_env requires it with a hook
    return PublishHook(
        settings.publish_hook_url, settings.webhook_secret, settings.hook_timeout_s, settings.max_text_chars, metrics
    )
