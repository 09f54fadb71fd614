"""Per-address connection counting, and which addresses are exempt.

FORWARDED_ALLOW_IPS names the trusted proxies: uvicorn believes their
``X-Forwarded-For``, so a client's address is its real one behind the load
balancer. Two uses here:

- a *peer* (the TCP connection's other end) that is a trusted proxy is not
  limited per address at the socket level: it carries many clients (the
  load balancer limits them per source itself, deploy/haproxy/haproxy.cfg);
- a *client address* is exempt only when it is listed explicitly (not by
  ``*``): loopback by default, so local tools and the benchmark are exempt,
  while ``*`` (believe any proxy) still limits every real client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache


class TrustedProxies:
    def __init__(self, entries: tuple[str, ...]) -> None:
        self.everyone = "*" in entries
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != "*")
        self._listed = lru_cache(maxsize=4096)(self._in_networks)

    def __contains__(self, peer: object) -> bool:
        """Is this peer a trusted proxy (listed, or everyone is)?"""
        return self.everyone or self.exempt(peer)

    def exempt(self, address: object) -> bool:
        """Is this client address listed explicitly (exempt from per-address limits)?"""
        return isinstance(address, str) and self._listed(address)

    def _in_networks(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # not an IP (a test client, a unix socket)
        return any(address in network for network in self.networks)


class AddressCounter:
    """Open connections per address, at most `limit` each; addresses for
    which `exempt` says so are not counted. Entries vanish at zero."""

    def __init__(self, limit: int, exempt: Callable[[str], bool]) -> None:
        self.limit = limit
        self.is_exempt = exempt
        self.counts: dict[str, int] = {}

    def acquire(self, address: str | None) -> bool:
        if address is None or self.is_exempt(address):
            return True
        count = self.counts.get(address, 0)
        if count >= self.limit:
            return False
        self.counts[address] = count + 1
        return True

    def release(self, address: str | None) -> None:
        if address is None:
            return
        count = self.counts.get(address)
        if count is None:
            return  # exempt: never counted
        if count <= 1:
            del self.counts[address]
        else:
            self.counts[address] = count - 1
