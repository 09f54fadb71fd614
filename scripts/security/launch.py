"""Run the gateway with uvicorn's stock protocols (`stock`) or the guarded
ones (`guarded`): for guard_overhead.py only."""
import logging, sys
from switchboard_gateway import lifecycle
from switchboard_gateway.app import create_app
from switchboard_gateway.settings import Settings
if sys.argv[1] == "stock":
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    lifecycle.protocol_classes = lambda guard: (HttpToolsProtocol, WebSocketsSansIOProtocol)
s = Settings.from_env()
logging.basicConfig(level="WARNING")
lifecycle.run(create_app(s))
