"""Server-side request forgery guard for the addresses customers configure: REST ingestion rules,
SaaS base URLs and database hosts.

A customer-supplied URL must not reach this account's own network: loopback, link-local
(169.254.0.0/16 holds the instance metadata service), private ranges, and addresses no public
host has (unspecified, multicast, reserved, shared CGNAT, documentation), in IPv4, IPv6 and every
IPv6 form that embeds an IPv4 address (mapped, NAT64, 6to4, Teredo). A host name is refused when
any of its addresses is. The deploy parameter AllowPrivateNetworkSources
(ALLOW_PRIVATE_NETWORK_SOURCES=true) lifts the rule for private and loopback addresses, for
sources inside a VPC and for the local cloud; the metadata address stays refused even then.

Address literals in every spelling are refused at registration without resolving anything
(`refusal_for_host`). Names are checked before every connection: the REST connector checks the
address each connection actually reached (`refusal_for_address`) and database connectors connect
to an address this module resolved and allowed (`allowed_addresses`), so a DNS answer that changes
between the check and the connection (rebinding) is caught too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from churnguard.config import env_bool

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata endpoints: never a data source, whatever the deployment allows.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
    }
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_NUMERIC_IPV4 = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)(\.(0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")


class BlockedAddressError(ValueError):
    """A URL names or resolves to an address a source may not have; the message says why."""


def private_networks_allowed() -> bool:
    return env_bool("ALLOW_PRIVATE_NETWORK_SOURCES", False)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the embedding forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = address.packed
    if packed[:12] == bytes(12) and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(packed[12:])
    return None


def _why(address: IpAddress, allow_private: bool) -> str | None:
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    reason: str | None = None
    if address in METADATA_ADDRESSES:
        reason = "is the cloud instance metadata address"
    elif isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        reason = "is a local-use NAT64 address"
    elif inner is not None:
        embedded = _why(inner, allow_private)
        reason = None if embedded is None else f"embeds {inner}, which {embedded}"
    elif address.is_unspecified:
        reason = "is the unspecified address"
    elif address.is_multicast or address.is_link_local:
        reason = f"is a {'multicast' if address.is_multicast else 'link-local'} address"
    elif address.is_loopback:
        reason = None if allow_private else "is a loopback address"
    elif address.is_private or address in _SHARED:
        # is_private covers 10/8, 172.16/12, 192.168/16, fc00::/7 and the other non-global
        # special-purpose blocks (documentation, benchmarking, reserved).
        reason = None if allow_private and not address.is_reserved else "is a private or reserved address"
    elif address.is_reserved or not address.is_global:
        reason = "is a reserved address"
    return reason


def refusal_for_address(address: str, *, allow_private: bool | None = None) -> str | None:
    """Why a source may not connect to `address` (an IP literal), or None when it may."""
    allowed = private_networks_allowed() if allow_private is None else allow_private
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "is not an IP address"
    reason = _why(parsed, allowed)
    return None if reason is None else f"{parsed} {reason}"


def literal_address(host: str) -> IpAddress | None:
    """The address `host` names without any DNS: an IPv6 or IPv4 literal, including the forms
    inet_aton accepts (2852039166, 0xA9FEA9FE, 0251.0376.0251.0376, 169.254.43518), which
    resolvers and database drivers connect to as written. None for a host name."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # inet_aton also takes "1.2.3.4 anything"; only the characters of a numeric form may pass.
    if not _NUMERIC_IPV4.fullmatch(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def refusal_for_host(host: str, *, allow_private: bool | None = None) -> str | None:
    """Why a source may not use `host` when it is an address literal, without resolving
    anything: registration checks this, and a host name is checked when connecting."""
    address = literal_address(host)
    return None if address is None else refusal_for_address(str(address), allow_private=allow_private)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedAddressError(f"host {host!r} does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Raises BlockedAddressError unless `url` is http(s) and every address of its host may be
    reached. The message names the host and the address, never the URL's path or query."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise BlockedAddressError("must be an absolute http:// or https:// URL")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BlockedAddressError("has an invalid port") from None
    allowed_addresses(host, port, allow_private=allow_private)


def allowed_addresses(host: str, port: int, *, allow_private: bool | None = None) -> list[str]:
    """Every address `host` resolves to, when all of them may be reached; else BlockedAddressError.
    A connection made to one of these (not to the name again) cannot be rebound by DNS."""
    allowed = private_networks_allowed() if allow_private is None else allow_private
    addresses = resolve(host, port)
    for address in addresses:
        reason = refusal_for_address(address, allow_private=allowed)
        if reason is not None:
            advice = "" if allowed else "; private networks are refused unless the deployment allows them"
            raise BlockedAddressError(f"host {host!r} resolves to {reason}{advice}")
    return addresses
