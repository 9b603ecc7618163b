"""Who is asking: the client's address, also behind a reverse proxy.

Behind a reverse proxy every request comes from the proxy: list it in ``console.trusted_proxies`` and the
client is the right-most ``X-Forwarded-For`` address that is not itself a trusted proxy. The header of a peer
that is not trusted is ignored (anyone can send it). Login throttling, the citizens' API limits, the audit
table and the access log all use this one address.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from aiohttp import web

from agent_console import keys


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(p, strict=False) for p in proxies)


def _trusted(address: str, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:10.0.0.1 is 10.0.0.1
    return any(ip in net for net in networks)


def client_address(request: web.Request) -> str:
    """The client's address: the direct peer, or behind trusted proxies the right-most untrusted hop of
    ``X-Forwarded-For``."""
    peer = request.remote or "unknown"
    networks = _networks(request.app[keys.SETTINGS].console.trusted_proxies)
    if not _trusted(peer, networks):
        return peer
    hops = [
        h.strip()
        for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        if h.strip()
    ]
    return next((h for h in reversed(hops) if not _trusted(h, networks)), hops[0] if hops else peer)
