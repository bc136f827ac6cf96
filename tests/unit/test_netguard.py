"""The SSRF guard: which addresses a customer-configured URL may reach, with and without the
deployment's permission for private networks. No DNS: names resolve through a stub."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from churnguard import netguard
from churnguard.netguard import BlockedAddressError, check_url, refusal_for_address

ALWAYS_REFUSED = [
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b:1::1", "NAT64"),
]
PRIVATE = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::127.0.0.1", "loopback"),
    ("2002:c0a8:0101::1", "private"),  # 6to4 of 192.168.1.1
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
]
PUBLIC = ["8.8.8.8", "93.184.215.14", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::1"]


@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED + PRIVATE)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    refusal = refusal_for_address(address, allow_private=False)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED)
def test_metadata_link_local_and_special_addresses_stay_refused_when_private_networks_are_allowed(
    address: str, reason: str
) -> None:
    refusal = refusal_for_address(address, allow_private=True)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize(("address", "reason"), PRIVATE)
def test_private_networks_can_be_allowed(address: str, reason: str) -> None:
    assert refusal_for_address(address, allow_private=True) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_for_address(address, allow_private=False) is None


def test_the_deploy_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    assert refusal_for_address("10.0.0.1") is None
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")
    assert refusal_for_address("10.0.0.1") is not None
    monkeypatch.delenv("ALLOW_PRIVATE_NETWORK_SOURCES")
    assert refusal_for_address("10.0.0.1") is not None, "refused unless allowed"


def _resolving(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[tuple[str, int]]:
    asked: list[tuple[str, int]] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append((host, port))
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_is_refused_when_any_of_its_addresses_is(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolving(monkeypatch, "93.184.215.14", "10.0.0.9")
    with pytest.raises(BlockedAddressError) as refused:
        check_url("https://api.example.com:8443/v1/items?token=abc", allow_private=False)
    assert asked == [("api.example.com", 8443)]
    message = str(refused.value)
    assert "'api.example.com' resolves to 10.0.0.9" in message and "token=abc" not in message
    check_url("https://api.example.com/v1/items", allow_private=True)


def test_public_names_pass_and_default_ports_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolving(monkeypatch, "93.184.215.14")
    check_url("https://api.example.com/x", allow_private=False)
    check_url("http://api.example.com/x", allow_private=False)
    assert asked == [("api.example.com", 443), ("api.example.com", 80)]


def test_names_that_do_not_resolve_and_other_schemes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(netguard.socket, "getaddrinfo", fail)
    with pytest.raises(BlockedAddressError, match="does not resolve"):
        check_url("https://nowhere.invalid/x", allow_private=False)
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http:///x", "https://example.com:99999/"):
        with pytest.raises(BlockedAddressError):
            check_url(url, allow_private=False)
