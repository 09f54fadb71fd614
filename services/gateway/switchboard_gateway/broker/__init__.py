"""Brokers: the node's only way to reach other gateways (see ``base``)."""

from __future__ import annotations

from switchboard_gateway.broker.base import Broker, BrokerEvents, BrokerUnavailable
from switchboard_gateway.settings import Settings


def create_broker(settings: Settings) -> Broker:
    """The broker the settings ask for: ``memory://`` or a Redis URL.
    Presence entries live ``presence_entry_lifetime_s`` (see presence.py)."""
    if settings.memory_broker:
        from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub

        return MemoryBroker(
            MemoryHub(
                history_size=settings.history_size,
                idempotency_window_s=settings.idempotency_window_s,
                presence_entry_lifetime_s=settings.presence_entry_lifetime_s,
                presence_events_max=settings.presence_events_max,
            )
        )
    from switchboard_gateway.broker.redis import RedisBroker

    return RedisBroker(
        settings.redis_url,
        prefix=settings.redis_prefix,
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        idempotency_window_s=settings.idempotency_window_s,
        presence_ttl_s=settings.presence_entry_lifetime_s,  # RedisBroker's name for the entry lifetime
        presence_events_max=settings.presence_events_max,
    )


__all__ = ["Broker", "BrokerEvents", "BrokerUnavailable", "create_broker"]
