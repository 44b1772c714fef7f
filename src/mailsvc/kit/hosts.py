"""Refuse server addresses inside private networks (SSRF protection).

An account or webhook host is user input that mailsvc will connect to; without
this check a tenant could make the service probe its own network. Every address a
name resolves to must be public, or `ALLOW_PRIVATE_HOSTS` must be set.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket


class HostNotAllowedError(Exception):
    """The host resolves to a non-public address, or does not resolve at all."""


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (without blocking the event loop)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostNotAllowedError(f"host {host!r} does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})


async def ensure_public_host(host: str, port: int, *, allow_private: bool) -> None:
    """Raise `HostNotAllowedError` unless every address of `host` is public."""
    if allow_private:
        return
    for text in await resolve_host(host, port):
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not _is_public(address):
            raise HostNotAllowedError(
                f"host {host!r} resolves to a private, loopback or link-local address; "
                "set ALLOW_PRIVATE_HOSTS=true to allow it"
            )
