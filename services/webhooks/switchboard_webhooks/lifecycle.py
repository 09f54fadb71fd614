"""Running the dispatcher under uvicorn; SIGTERM stops it cleanly.

On the first SIGTERM or SIGINT the delivery loop stops reading at once
(``Dispatcher.stop``) while uvicorn closes its listener; the lifespan then
waits for the batches in flight: a POST under way finishes (at most
WEBHOOK_TIMEOUT), the rest is released to the other dispatchers. A second
signal exits without waiting. A clean stop exits 0; a delivery loop that
ended by itself (a bug) stops the server and exits 1.
"""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn

from switchboard_webhooks.app import WebhookService


class DispatcherServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: WebhookService) -> None:
        super().__init__(config)
        self.service = service

    # Not super(): uvicorn's own handler re-raises the signal after shutdown,
    # so a clean stop would end "killed by SIGTERM" (143) instead of 0.
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
            return
        self.should_exit = True
        asyncio.get_event_loop().call_soon_threadsafe(self.service.stop)


def run(service: WebhookService) -> int:
    """Serve until stopped; the exit status (1 when the delivery loop failed)."""
    settings = service.settings
    config = uvicorn.Config(
        service.app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # scrapes and probes every few seconds: noise
        # The listener closes at once; the lifespan shutdown waits for the
        # batch in flight (bounded by WEBHOOK_TIMEOUT).
        timeout_graceful_shutdown=1,
        server_header=False,
    )
    server = DispatcherServer(config, service)

    def stop_server() -> None:
        server.should_exit = True

    service.on_failure = stop_server
    server.run()
    return 1 if service.failed else 0
