"""Which hosts a bot may call, and which addresses they may be reached at."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# 64:ff9b::/96 carries an IPv4 address in its last 32 bits (NAT64, RFC 6052): judge that one.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# The first test an address passes names it in messages; order matters (127.0.0.1 is private too).
KINDS: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("an unspecified", lambda a: a.is_unspecified),
    ("a loopback", lambda a: a.is_loopback),
    ("a link-local", lambda a: a.is_link_local),
    ("a multicast", lambda a: a.is_multicast),
    ("a reserved", lambda a: a.is_reserved),
    ("a private", lambda a: a.is_private),
    ("a site-local", lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
)

# Every label a number (decimal, octal or 0x-hex): the C resolver reads `127.1`, `0x7f.1` or
# `2130706433` as an IPv4 address, so such a name is an address in disguise.
NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
NOT_IN_NAMES = re.compile(r"[^a-z0-9.\-_\u0080-\U0010ffff]")


@dataclass(frozen=True)
class HostPolicy:
    """The hosts one bot may call (its `allow_hosts`), built with `from_entries`.

    A URL's host must be a listed name, match a `*.example.com` wildcard (any name ending in
    `.example.com`, not `example.com` itself), or be a listed address. Every address a name
    resolves to must then be public, except a listed address (so listing `127.0.0.1` or
    `10.0.0.7` lets names resolving to it through) and loopback for a listed `localhost`,
    which resolves from the hosts file, not from DNS. A public name whose DNS answers a
    private address is refused, however it is listed: DNS can be changed by others.
    """

    names: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    addresses: frozenset[Address] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> HostPolicy:
        """Names, `*.` wildcards and IP addresses; ValueError names the first bad entry."""
        names: set[str] = set()
        suffixes: set[str] = set()
        addresses: set[Address] = set()
        for entry in entries:
            text = entry.strip().lower()
            address = literal_address(text.removeprefix("[").removesuffix("]"))
            if address is not None:
                addresses.add(address)
            elif text.startswith("*."):
                suffixes.add("." + _entry_name(text[2:], entry, wildcard=True))
            else:
                names.add(_entry_name(text, entry))
        return cls(frozenset(names), frozenset(suffixes), frozenset(addresses))

    def host_refusal(self, host: str) -> str | None:
        """Why a URL may not call `host` (as httpx spells it: lower case, IDNA), or None."""
        host = host.rstrip(".")
        address = literal_address(host)
        if address is not None:
            if address in self.addresses:
                return None
            return f"{spelled(address)} is not in allow_hosts (add it to call it)"
        if is_numeric_name(host):
            return (
                f"'{host}' is an IPv4 address in an unusual spelling; write it as four "
                "decimal numbers, like 127.0.0.1, and list it in allow_hosts"
            )
        if host in self.names or any(host.endswith(suffix) for suffix in self.suffixes):
            return None
        return f"'{host}' is not in allow_hosts (add it to call it)"

    def address_refusal(self, host: str, address: Address) -> str | None:
        """Why `host` may not be reached at `address`, which it resolved to, or None."""
        inner = unwrapped(address)
        if address in self.addresses or inner in self.addresses:
            return None
        if host.rstrip(".") == "localhost" and "localhost" in self.names and inner.is_loopback:
            return None
        kind = non_public_kind(address)
        if kind is None:
            return None
        shown = spelled(address) if inner == address else f"{spelled(address)} ({inner})"
        return (
            f"'{host}' resolves to {shown}, {kind} address, called only when listed "
            f"(add {inner} to allow_hosts if you trust it)"
        )


def literal_address(text: str) -> Address | None:
    """The address `text` spells in its usual form (`127.0.0.1`, `::1`), or None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def spelled(address: Address) -> str:
    """`::ffff:127.0.0.1` as such: Python 3.11 writes it `::ffff:7f00:1`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def is_numeric_name(host: str) -> bool:
    return all(NUMERIC_LABEL.fullmatch(label) for label in host.split("."))


def unwrapped(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def non_public_kind(address: Address) -> str | None:
    """`a private`, `a loopback`, ... for an address that is not public; None if it is."""
    inner = unwrapped(address)
    for kind, test in KINDS:
        if test(inner):
            return kind
    return None if inner.is_global else "a non-public"


def _entry_name(text: str, entry: str, *, wildcard: bool = False) -> str:
    """The host name `text` as httpx will spell a URL's host; ValueError if it is none."""
    text = text.rstrip(".")
    if not text or NOT_IN_NAMES.search(text):
        raise ValueError(
            f"allow_hosts: {entry!r} is not a host name; write a name like api.example.com, "
            "a wildcard like *.example.com or an address like 127.0.0.1 (no scheme, port or path)"
        )
    if is_numeric_name(text):
        raise ValueError(
            f"allow_hosts: {entry!r} is an IPv4 address in an unusual spelling; write it as "
            "four decimal numbers, like 127.0.0.1"
        )
    if wildcard and "." not in text:
        raise ValueError(
            f"allow_hosts: {entry!r} matches every name under a top-level domain; "
            "name the site, like *.example.com"
        )
    try:
        return httpx.URL(f"http://{text}/").raw_host.decode("ascii")
    except httpx.InvalidURL as exc:
        raise ValueError(f"allow_hosts: {entry!r} is not a valid host name ({exc})") from None
