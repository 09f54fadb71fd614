"""Brokers: the node's only way to reach other gateways (see ``base``)."""

from __future__ import annotations

import re

from switchboard.backplane.connect import ClusterMode
from switchboard_gateway.broker.base import Broker, BrokerEvents, BrokerOutcomeUnknown, BrokerUnavailable
from switchboard_gateway.settings import Settings

_CLUSTER_MODES: dict[str, ClusterMode] = {"auto": "auto", "true": "true", "false": "false"}


def subscription_client_name(node: str) -> str:
    """``switchboard-sub-<node>``: the gateway's subscription connections in
    ``CLIENT LIST`` (Redis allows no spaces or newlines there)."""
    return "switchboard-sub-" + re.sub(r"[^A-Za-z0-9_.:-]", "_", node)


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
    from switchboard.backplane.pipeline import Durability
    from switchboard_gateway.broker.redis import RedisBroker

    durability = None
    if settings.publish_durability == "replicas":
        durability = Durability(replicas=1, timeout_ms=max(1, round(settings.durability_timeout_s * 1000)))
    return RedisBroker(
        settings.redis_url,
        prefix=settings.redis_prefix,
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        idempotency_window_s=settings.idempotency_window_s,
        presence_ttl_s=settings.presence_entry_lifetime_s,  # RedisBroker's name for the entry lifetime
        presence_events_max=settings.presence_events_max,
        events_maxlen=settings.events_maxlen,
        cluster=_CLUSTER_MODES[settings.redis_cluster],
        durability=durability,
        client_name=subscription_client_name(settings.node),
    )


__all__ = ["Broker", "BrokerEvents", "BrokerOutcomeUnknown", "BrokerUnavailable", "create_broker"]
