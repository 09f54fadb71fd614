"""Two brokers on one backplane (= two gateways), for each implementation:
``MemoryBroker`` x2 on one ``MemoryHub``, and ``RedisBroker`` x2 on the real
Redis under the test's own key prefix. Both run on one fake clock for
presence expiry (injected into ``MemoryHub``; ``RedisBroker``'s ``_now_ms``
is patched), so expiry is tested without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from broker_harness import (
    HISTORY_SIZE,
    PRESENCE_EVENTS_MAX,
    PRESENCE_TTL,
    Cluster,
    FakeClock,
    Recorder,
    delete_prefix,
)

from switchboard_gateway.broker import redis as redis_broker_module
from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub
from switchboard_gateway.broker.redis import RedisBroker


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    clock = FakeClock()
    ea, eb = Recorder("a"), Recorder("b")
    if request.param == "memory":
        hub = MemoryHub(
            history_size=HISTORY_SIZE,
            idempotency_window_s=120,
            presence_ttl_s=PRESENCE_TTL,
            presence_events_max=PRESENCE_EVENTS_MAX,
            clock=clock,
        )
        a, b = MemoryBroker(hub), MemoryBroker(hub)
        await a.start(ea)
        await b.start(eb)
        async def flush() -> None:
            hub.flush()

        yield Cluster("memory", a, b, ea, eb, clock, lose_history=flush)
        await a.close()
        await b.close()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    monkeypatch.setattr(redis_broker_module, "_now_ms", lambda: int(clock.now * 1000))
    brokers = [
        RedisBroker(
            url,
            prefix=prefix,
            history_size=HISTORY_SIZE,
            idempotency_window_s=120,
            presence_ttl_s=PRESENCE_TTL,
            presence_events_max=PRESENCE_EVENTS_MAX,
        )
        for _ in range(2)
    ]
    try:
        for broker, events in zip(brokers, (ea, eb)):
            await broker.start(events)
            assert broker.available, "RedisBroker did not connect to the test Redis"
        yield Cluster("redis", brokers[0], brokers[1], ea, eb, clock, lose_history=lambda: delete_prefix(url, prefix))
    finally:
        for broker in brokers:
            await broker.close()
        await delete_prefix(url, prefix)
