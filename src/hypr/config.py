"""Where a daemon keeps its files, read once from the environment. Every path derives from two roots so that
several daemons (tests, simulated hosts) can run side by side."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "/var/lib/hypr"
DEFAULT_RUNTIME_DIR = "/run/hypr"
DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_GATEWAY = "10.88.0.1"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    runtime_dir: Path

    @property
    def db(self) -> Path:
        return self.data_dir / "hypr.db"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "hypr.sock"

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / "hyprd.pid"

    @property
    def workloads(self) -> Path:
        return self.runtime_dir / "workloads"

    @property
    def images(self) -> Path:
        return self.data_dir / "images"


@dataclass(frozen=True)
class Settings:
    paths: Paths
    default_subnet: str = DEFAULT_SUBNET
    default_gateway: str = DEFAULT_GATEWAY
    resolv_conf: Path = Path("/etc/resolv.conf")
    dns_upstreams: tuple[tuple[str, int], ...] = ()  # HYPR_DNS_UPSTREAMS; empty: the host's resolv.conf
    configure_resolved: bool = True  # HYPR_CONFIGURE_RESOLVED=0: leave systemd-resolved alone


def paths_from_env(env: dict[str, str] | None = None) -> Paths:
    env = dict(os.environ) if env is None else env
    return Paths(
        data_dir=Path(env.get("HYPR_DATA_DIR") or DEFAULT_DATA_DIR),
        runtime_dir=Path(env.get("HYPR_RUNTIME_DIR") or DEFAULT_RUNTIME_DIR),
    )


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    return Settings(
        paths=paths_from_env(env),
        default_subnet=env.get("HYPR_DEFAULT_SUBNET") or DEFAULT_SUBNET,
        default_gateway=env.get("HYPR_DEFAULT_GATEWAY") or DEFAULT_GATEWAY,
        resolv_conf=Path(env.get("HYPR_RESOLV_CONF") or "/etc/resolv.conf"),
        dns_upstreams=parse_upstreams(env.get("HYPR_DNS_UPSTREAMS", "")),
        configure_resolved=env.get("HYPR_CONFIGURE_RESOLVED", "1") != "0",
    )


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """`1.1.1.1,9.9.9.9:5353` -> ((host, port), ...)."""
    upstreams = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.partition(":")
        upstreams.append((host, int(port or 53)))
    return tuple(upstreams)
