"""The client's address: the socket peer, or what a trusted proxy (the gateway) says it is."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def _address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


class ClientAddressResolver:
    """Believes the client header / X-Forwarded-For only from the configured proxy addresses."""

    def __init__(self, trusted_proxies: str, client_ip_header: str = "X-Real-IP") -> None:
        self.trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in trusted_proxies.split(",")
            if part.strip()
        )
        self.client_ip_header = client_ip_header.strip().lower()

    def is_trusted(self, address: str | None) -> bool:
        """Whether `address` is one of the trusted proxies."""
        parsed = _address(address)
        return parsed is not None and any(parsed in network for network in self.trusted)

    def resolve(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The client's address for throttling (normalised), or `unknown` when there is none."""
        if not self.is_trusted(peer):
            parsed_peer = _address(peer)
            return str(parsed_peer) if parsed_peer else (peer or UNKNOWN)
        # A proxy that writes its own peer here (a second nginx behind the load balancer) names
        # one of ours, not the client: then the forwarded chain decides.
        real_ip = _address(headers.get(self.client_ip_header))
        if real_ip is not None and not self.is_trusted(str(real_ip)):
            return str(real_ip)
        # Walk X-Forwarded-For from the right: the first address no trusted proxy owns is the
        # client; anything further left was written by the client and may be forged.
        forwarded = [part.strip() for part in (headers.get("x-forwarded-for") or "").split(",")]
        for candidate in reversed([part for part in forwarded if part]):
            parsed = _address(candidate)
            if parsed is None:
                break
            if not self.is_trusted(str(parsed)):
                return str(parsed)
        return str(_address(peer))
