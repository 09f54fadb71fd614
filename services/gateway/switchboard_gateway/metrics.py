"""Every Prometheus metric of the gateway, defined once, with help text.

One uvicorn process per container, so the default in-process registry is
right; each replica is scraped on its own ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge("switchboard_connections", "Open WebSocket connections.", registry=r)
        self.rooms = Gauge("switchboard_rooms", "Rooms with local members (subscribed channels).", registry=r)
        self.frames_in = Counter("switchboard_frames_in", "Client frames received.", registry=r)
        self.messages_published = Counter(
            "switchboard_messages_published", "Messages stored and published by this gateway.", registry=r
        )
        self.messages_out = Counter(
            "switchboard_messages_out", "Message frames handed to local sockets (deliveries).", registry=r
        )
        self.errors_out = Counter("switchboard_errors_out", "Error frames sent, by code.", ["code"], registry=r)
        self.closes = Counter("switchboard_closes", "Connections closed by the server, by close code.", ["code"], registry=r)
        self.fanout_seconds = Histogram(
            "switchboard_fanout_seconds",
            "Time to hand one message to every local member.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.delivery_lag_seconds = Histogram(
            "switchboard_delivery_lag_seconds",
            "From publish (the message's ts) to being handed to local members, live or from history.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.gap_fills = Counter("switchboard_gap_fills", "Catch-ups from history after a gap or resubscribe.", registry=r)
        self.resets = Counter("switchboard_resets", "Rooms that moved to a new epoch (history lost).", registry=r)
        self.offset_reuses = Counter(
            "switchboard_offset_reuses",
            "Rooms whose delivered offsets the backplane lost (failover): given a new epoch.",
            registry=r,
        )
        self.lost_positions = Counter(
            "switchboard_lost_positions", "Catch-ups that found a gap older than history (members closed 1013).", registry=r
        )
        self.backlog_overflows = Counter(
            "switchboard_backlog_overflows", "Room backlogs dropped to be read from history instead.", registry=r
        )
        self.task_failures = Counter(
            "switchboard_task_failures", "Failures of background tasks (each retried), by task.", ["task"], registry=r
        )
        self.recoveries = Counter("switchboard_recoveries", "Joins with since, by outcome.", ["recovered"], registry=r)
        self.broker_available = Gauge("switchboard_broker_available", "1 while the backplane is reachable.", registry=r)
        # Hardening (docs/security.md): what the limits refused or cut off.
        self.refused = Counter(
            "switchboard_refused_connections",
            "Connections refused by a limit or a ban, by reason (total, address, user, banned).",
            ["reason"],
            registry=r,
        )
        self.aborted = Counter(
            "switchboard_aborted_transports",
            "Sockets dropped by the server layer, by reason (header_size, request_timeout, ping_flood, write_buffer, close_grace).",
            ["reason"],
            registry=r,
        )
        # The application backend (docs/protocol.md "Publish hook", "User control").
        self.hook_calls = Counter(
            "switchboard_hook_calls",
            "Publish hook calls, by outcome (accepted, replaced, rejected, unavailable).",
            ["outcome"],
            registry=r,
        )
        self.control_commands = Counter(
            "switchboard_control_commands",
            "User control commands applied by this gateway, by op (disconnect, remove, direct).",
            ["op"],
            registry=r,
        )
