"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses.

The check runs when an endpoint is created and again before every delivery, on every address
the name resolves to, and the delivery then connects to an address that was checked, so a DNS
answer that changes between the check and the connection (DNS rebinding) cannot reach inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from notifications_microservice.webhooks.exceptions import InvalidWebhookUrl

MAX_URL_LENGTH = 2048

# Prefixes that carry an IPv4 address inside an IPv6 one: a relay or translator on the way
# would deliver to the embedded address, which may be private (ip.is_global says yes to some).
TRANSLATION_NETWORKS = {
    ipaddress.IPv6Network("64:ff9b::/96"): "a NAT64 address",
    ipaddress.IPv6Network("64:ff9b:1::/48"): "a NAT64 address",
    ipaddress.IPv6Network("2002::/16"): "a 6to4 address",
    ipaddress.IPv6Network("2001::/32"): "a Teredo address",
}

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_webhook_url(url: str) -> httpx.URL:
    """The URL if it is an absolute http(s) URL without credentials, else InvalidWebhookUrl."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidWebhookUrl(f"The URL cannot be parsed: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise InvalidWebhookUrl("The URL must start with https:// or http://.")
    if not parsed.host:
        raise InvalidWebhookUrl("The URL has no host.")
    if parsed.userinfo:
        raise InvalidWebhookUrl("The URL must not carry a user name or password.")
    if parsed.fragment:
        raise InvalidWebhookUrl("The URL must not have a #fragment.")
    return parsed


def forbidden_because(address: str) -> str | None:
    """Why webhooks may not go to `address`, or None for a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for network, name in TRANSLATION_NETWORKS.items():
            if ip in network:
                return name
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "an address that is not publicly routable"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked webhook URL and the address to connect to (None: connect by name)."""

    url: httpx.URL
    address: str | None

    def request_url(self) -> httpx.URL:
        """The URL to connect to: the checked address in place of the name."""
        return self.url if self.address is None else self.url.copy_with(host=self.address)


async def check_destination(
    url: str,
    *,
    allow_private: bool,
    allowed_ports: frozenset[int] = frozenset(),
    resolver: Resolver = resolve_host,
) -> Destination:
    """Resolve the URL's host and refuse it if any address is not public (unless allowed).

    With `allowed_ports`, a URL naming (or implying) another port is refused too.
    """
    parsed = parse_webhook_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if allowed_ports and port not in allowed_ports:
        listed = ", ".join(str(allowed) for allowed in sorted(allowed_ports))
        raise InvalidWebhookUrl(
            f"Webhooks can be delivered only to port {listed}; this URL uses port {port}."
        )
    if allow_private:
        return Destination(parsed, None)
    host = parsed.host
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise InvalidWebhookUrl(f"The host {host} does not resolve ({exc}).") from exc
    if not addresses:
        raise InvalidWebhookUrl(f"The host {host} does not resolve.")
    for address in addresses:
        reason = forbidden_because(address)
        if reason is not None:
            raise InvalidWebhookUrl(
                f"The host {host} resolves to {address}, {reason}; webhooks go to public "
                "addresses only."
            )
    return Destination(parsed, addresses[0])
