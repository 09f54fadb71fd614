"""The dispatcher's pure parts: backoff, request body, entry checks, and
what happens when its delivery loop dies."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from switchboard.backplane.events import EventsLayout
from switchboard_webhooks.app import WebhookService
from switchboard_webhooks.delivery import batch_body
from switchboard_webhooks.dispatcher import backoff_delay, consumer_name
from switchboard_webhooks.settings import Settings
from switchboard_webhooks.source import make_item


@given(st.integers(min_value=1, max_value=1000), st.floats(0.01, 5), st.floats(5, 120))
def test_backoff_grows_then_stays_capped_with_jitter(attempt: int, base: float, cap: float) -> None:
    delay = backoff_delay(attempt, base, cap)
    full = min(cap, base * 2 ** min(attempt - 1, 30))
    assert full / 2 <= delay <= full


def test_backoff_doubles() -> None:
    assert [backoff_delay(n, 1, 100) >= 2 ** (n - 1) / 2 for n in range(1, 8)] == [True] * 7
    assert backoff_delay(50, 0.5, 30) <= 30


def test_consumer_names_are_unique_per_process_start() -> None:
    assert consumer_name() != consumer_name()


def test_batch_body_is_a_json_array() -> None:
    assert batch_body([b'{"id":"1-0"}', b'{"id":"2-0"}']) == b'[{"id":"1-0"},{"id":"2-0"}]'


def test_make_item() -> None:
    layout = EventsLayout("sb", cluster=True)
    stream = layout.stream_for_slot(12)
    good = make_item(layout, stream, "5-0", {b"e": b'{"type":"user_left","room":"r","ts":9,"user":{}}'}, 1)
    assert good.malformed is None and good.ts_ms == 9
    assert good.body == b'{"id":"12-5-0","type":"user_left","room":"r","ts":9,"user":{}}'
    missing = make_item(layout, stream, "6-0", {b"x": b"1"}, 1)
    assert missing.malformed == "no field 'e'" and missing.body == b'{"x":"1"}'
    for stored in (b"{}", b'{"type":"x"}', b'{"type":1,"room":"r","ts":1}', b"oops"):
        bad = make_item(layout, stream, "7-0", {b"e": stored}, 3)
        assert bad.malformed and bad.body == stored and bad.attempts == 3


async def test_a_dead_delivery_loop_stops_the_service() -> None:
    env = {"WEBHOOK_URL": "http://127.0.0.1:9/x", "WEBHOOK_SECRET": "x" * 32, "EVENTS_MAXLEN": "10"}
    service = WebhookService(Settings.from_env(env))

    async def broken() -> None:
        raise RuntimeError("a bug")

    service.dispatcher.run = broken  # type: ignore[method-assign]
    failed = asyncio.Event()
    service.on_failure = failed.set
    async with service.lifespan(service.app):
        await asyncio.wait_for(failed.wait(), 5)
        assert service.failed
        response = await service.healthz(None)  # type: ignore[arg-type]
        assert response.status_code == 503


async def test_healthz_while_running() -> None:
    env = {"WEBHOOK_URL": "http://127.0.0.1:9/x", "WEBHOOK_SECRET": "x" * 32, "EVENTS_MAXLEN": "10"}
    service = WebhookService(Settings.from_env(env))
    running = asyncio.Event()

    async def idle() -> None:
        running.set()
        await service.dispatcher._stopping.wait()

    service.dispatcher.run = idle  # type: ignore[method-assign]
    async with service.lifespan(service.app):
        await asyncio.wait_for(running.wait(), 5)
        assert (await service.healthz(None)).status_code == 200  # type: ignore[arg-type]
    assert not service.failed
