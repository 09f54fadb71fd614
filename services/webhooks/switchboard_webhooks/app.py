"""The dispatcher as an ASGI app: ``/healthz`` and ``/metrics`` on
HOST/PORT, the delivery loop started and stopped by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard_webhooks import source
from switchboard_webhooks.delivery import Poster
from switchboard_webhooks.dispatcher import Dispatcher
from switchboard_webhooks.metrics import Metrics
from switchboard_webhooks.settings import Settings

log = logging.getLogger("switchboard.webhooks")


class WebhookService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.poster = Poster(settings.webhook_url, settings.webhook_secret, settings.timeout_s, settings.concurrency)
        connect = functools.partial(
            source.connect,
            settings.redis_urls,
            settings.redis_cluster,
            settings.redis_prefix,
            settings.events_maxlen,  # the dead-letter stream is capped like the events stream
        )
        self.dispatcher = Dispatcher(settings, connect, self.poster, self.metrics)
        self._task: asyncio.Task[None] | None = None
        self.failed = False
        # Called when the delivery loop ends by itself (a bug): the server
        # stops and the process exits 1, so any supervisor restarts it.
        self.on_failure: Callable[[], None] = lambda: None
        self.app = Starlette(
            routes=[Route("/healthz", self.healthz), Route("/metrics", self.metrics_endpoint)],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._task = asyncio.create_task(self.dispatcher.run())
        self._task.add_done_callback(self._ended)
        try:
            yield
        finally:
            self.dispatcher.stop()
            try:
                await self._task
            except Exception:
                if not self.failed:  # else _ended logged it
                    log.exception("the delivery loop failed while stopping")
            await self.poster.close()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self.dispatcher.stopping:
            return
        self.failed = True
        log.error("the delivery loop ended unexpectedly: %r", None if task.cancelled() else task.exception())
        self.on_failure()

    def stop(self) -> None:
        self.dispatcher.stop()

    async def healthz(self, request: Request) -> Response:
        """200 while the delivery loop runs (Redis down included: restarting
        would not help); 503 once it ended, so the orchestrator restarts us."""
        task = self._task
        if task is None or not task.done() or self.dispatcher.stopping:
            return JSONResponse({"status": "ok", "consumer": self.dispatcher.consumer})
        return JSONResponse({"status": "failed", "consumer": self.dispatcher.consumer}, status_code=503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
