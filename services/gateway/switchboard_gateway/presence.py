"""Keeping this gateway's members alive in cluster-wide presence.

A presence entry lives ``Settings.presence_entry_lifetime_s`` (PRESENCE_TTL/2)
after each refresh, and every gateway refreshes its own entries -- and sweeps
the expired ones of dead gateways -- every
``Settings.presence_refresh_interval_s`` (PRESENCE_TTL/4). One late refresh is
tolerated, and a dead gateway's members expire and are swept (with
``presence_leave``) within 3/4 of PRESENCE_TTL: inside the contract's bound.
A refresh also re-adds entries the backplane lost (a Redis restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable

from switchboard_gateway.broker import Broker
from switchboard_gateway.connection import Connection


async def refresh(broker: Broker, rooms: Iterable[tuple[str, list[Connection]]]) -> None:
    """Refresh each room's local members; sweep rooms with none. Every room
    is tried; the first failure is raised afterwards (for the supervisor)."""
    calls: list[Awaitable[object]] = []
    for room, members in rooms:
        if members:
            calls.append(broker.presence_upsert(room, [(conn.id, conn.user_json) for conn in members]))
        else:
            calls.append(broker.presence_sweep([room]))
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
