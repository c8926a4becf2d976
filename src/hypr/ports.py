"""Published ports, pure: the `-p` grammar and Docker's PortBindings map, both ways.

Forms (Docker's): `G`, `H:G`, `IP:H:G`, `IP::G` (an IPv6 IP in brackets: `[::1]:8080:80`), each with `/tcp` or `/udp`, equal-length ranges
`8000-8002:80-82`, and a host range for one guest port `8000-8010:80` (the first free port of the range is
published, as Docker does). A host port of 0 means "pick a free one" (the daemon does, by binding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, cast

from hypr.errors import InvalidParameter
from hypr.models import Protocol

ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True)
class PortSpec:
    guest_port: int
    protocol: Protocol
    host_ip: IPv4Address | IPv6Address = ANY  # ANY: both families (Docker's HostIp ""); `::`: every IPv6 address
    host_port: int = 0  # 0: a free port chosen at create time
    host_port_end: int = 0  # with host_port, a range to choose the first free port from; 0: just host_port

    def __lt__(self, other: PortSpec) -> bool:
        return self.sort_key < other.sort_key

    @property
    def sort_key(self) -> tuple[int, str, int, int, int, int]:
        """Guest port, protocol, then host address (IPv4 before IPv6) and ports: addresses of both families sort."""
        ip = self.host_ip
        return (self.guest_port, self.protocol, ip.version, int(ip), self.host_port, self.host_port_end)

    @property
    def host_ports(self) -> range:
        """The host ports to try, in order (one, or the range)."""
        return range(self.host_port, max(self.host_port, self.host_port_end) + 1)

    @property
    def host_text(self) -> str:
        if not self.host_port:
            return ""
        return f"{self.host_port}-{self.host_port_end}" if self.host_port_end else str(self.host_port)


def _port_range(text: str, spec: str) -> list[int]:
    first, sep, last = text.partition("-")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise InvalidParameter(f"invalid port specification: {spec!r}") from None
    if not (1 <= lo <= hi <= 65535):
        raise InvalidParameter(f"invalid port specification: {spec!r}")
    return list(range(lo, hi + 1))


def parse_publish(spec: str) -> list[PortSpec]:
    """One `-p` value -> one PortSpec per guest port."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    parts = body.rsplit(":", 2)
    host_ip_text, host_text, guest_text = ["", "", *parts][-3:] if len(parts) < 3 else parts
    host_ip = _parse_host_ip(host_ip_text, spec)
    guests = _port_range(guest_text, spec)
    hosts = _port_range(host_text, spec) if host_text else [0] * len(guests)
    if len(guests) == 1 and len(hosts) > 1:  # 8000-8010:80: one port, the first free one of the range
        return [PortSpec(guests[0], cast(Protocol, proto), host_ip, hosts[0], hosts[-1])]
    if len(hosts) != len(guests):  # Docker's (go-connections' ParsePortSpec) words
        raise InvalidParameter(f"invalid ranges specified for container and host Ports: {guest_text} and {host_text}")
    return [PortSpec(g, cast(Protocol, proto), host_ip, h) for g, h in zip(guests, hosts, strict=True)]


def _parse_host_ip(text: str, spec: str) -> IPv4Address | IPv6Address:
    text = text.strip("[]")
    if not text:
        return ANY
    try:
        return ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid IP address {text!r} in port specification {spec!r}") from None


def to_bindings(specs: Iterable[PortSpec]) -> dict[str, list[dict[str, str]]]:
    """Docker's HostConfig.PortBindings: {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for s in specs:
        bindings.setdefault(f"{s.guest_port}/{s.protocol}", []).append(
            {"HostIp": "" if s.host_ip == ANY else str(s.host_ip), "HostPort": s.host_text}
        )
    return bindings


def from_bindings(raw: Any) -> list[PortSpec]:
    """Validate a PortBindings map from the API into PortSpecs."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise InvalidParameter("invalid PortBindings: expected an object")
    specs = []
    for key, entries in raw.items():
        guest, _, proto = str(key).partition("/")
        for entry in entries or [{}]:
            if not isinstance(entry, Mapping):
                raise InvalidParameter(f"invalid PortBindings for {key}")
            host_ip = str(entry.get("HostIp") or "")
            host_port = str(entry.get("HostPort") or "")
            specs.extend(parse_publish(f"{host_ip}:{host_port}:{guest}/{proto or 'tcp'}"))
    return sorted(specs)
