"""Every Prometheus metric of the dispatcher, defined once, with help text.
Each dispatcher is scraped on its own ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.delivered = Counter(
            "switchboard_webhook_events_delivered", "Events the receiver acknowledged (2xx).", registry=r
        )
        self.retried = Counter(
            "switchboard_webhook_events_retried", "Event deliveries attempted again after a failed attempt.", registry=r
        )
        self.dead_lettered = Counter(
            "switchboard_webhook_events_dead_lettered",
            "Events moved to the dead-letter stream after WEBHOOK_MAX_ATTEMPTS failed attempts (or malformed).",
            registry=r,
        )
        self.lost = Counter(
            "switchboard_webhook_events_lost",
            "Pending events trimmed from the stream (EVENTS_MAXLEN) before they were delivered.",
            registry=r,
        )
        self.claimed = Counter(
            "switchboard_webhook_events_claimed", "Events taken over from a dispatcher that stopped answering.", registry=r
        )
        self.requests = Counter(
            "switchboard_webhook_requests", "POSTs to WEBHOOK_URL, by outcome (2xx, 4xx, 5xx, timeout, error).",
            ["outcome"], registry=r,
        )
        self.request_seconds = Histogram(
            "switchboard_webhook_request_seconds",
            "Duration of one POST to WEBHOOK_URL.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.delivery_delay_seconds = Histogram(
            "switchboard_webhook_delivery_delay_seconds",
            "From the event's ts to the receiver's acknowledgement.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.lag = Gauge(
            "switchboard_webhook_lag_events",
            "Events in the streams not yet read by the webhooks group (all dispatchers).",
            registry=r,
        )
        self.pending = Gauge(
            "switchboard_webhook_pending_events",
            "Events read by the webhooks group and not yet acknowledged (all dispatchers).",
            registry=r,
        )
        self.in_flight = Gauge("switchboard_webhook_batches_in_flight", "Batches this dispatcher holds.", registry=r)
        self.streams = Gauge("switchboard_webhook_streams", "Events streams being read.", registry=r)
        self.redis_available = Gauge("switchboard_webhook_redis_available", "1 while Redis answers.", registry=r)
