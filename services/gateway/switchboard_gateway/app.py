"""The composition root: the one place that picks concrete implementations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from switchboard_gateway.broker import Broker, create_broker
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.node import Node
from switchboard_gateway.routes.control import build_control_routes
from switchboard_gateway.routes.headers import SecurityHeaders
from switchboard_gateway.routes.http import build_routes
from switchboard_gateway.routes.tokens import build_token_routes
from switchboard_gateway.routes.websocket import WebSocketEndpoint
from switchboard_gateway.settings import Settings
from switchboard_gateway.userlimits import UserLimits


class Gateway:
    """The ASGI app: ``/ws`` goes straight to the WebSocket endpoint; all
    else (HTTP, lifespan) to Starlette."""

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.node = Node(settings, broker or create_broker(settings), Metrics())
        self.limits = UserLimits(self.node.broker, settings)
        self.websocket = WebSocketEndpoint(self.node, self.limits)
        # The user control API and the guest token refresh (their own modules), then the rest.
        routes = build_control_routes(self.node) + build_token_routes(self.node) + build_routes(self.node)
        starlette = Starlette(routes=routes, lifespan=self._lifespan)
        # "/static" would redirect to "/static/" with a Location built from
        # the Host header: no redirects at all (a wrong path is a 404).
        starlette.router.redirect_slashes = False
        self.http = SecurityHeaders(starlette)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.node.start()
        await self.limits.start()
        try:
            yield
        finally:
            await self.limits.stop()
            await self.node.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if scope["path"] == "/ws":
                await self.websocket(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.http(scope, receive, send)


def create_app(settings: Settings | None = None, broker: Broker | None = None) -> Gateway:
    return Gateway(settings or Settings.from_env(), broker)
