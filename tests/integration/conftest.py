"""Two real gateway processes on one real Redis, for the integration tier."""

from __future__ import annotations

import pytest

from switchboard_harness import GatewayProcess


@pytest.fixture
def two_gateways(start_gateway) -> tuple[GatewayProcess, GatewayProcess]:  # type: ignore[no-untyped-def]
    return start_gateway(NODE_ID="gw-a"), start_gateway(NODE_ID="gw-b")
