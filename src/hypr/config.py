"""Where a daemon keeps its files, read once from the environment. Every path derives from two roots so that
several daemons (tests, simulated hosts) can run side by side."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.images.registry import RegistryConfig

DEFAULT_DATA_DIR = "/var/lib/hypr"
DEFAULT_RUNTIME_DIR = "/run/hypr"
DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_GATEWAY = "10.88.0.1"
DEFAULT_CONFIG_FILE = "/etc/hypr/daemon.json"


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
    registry: RegistryConfig = field(default_factory=RegistryConfig)  # insecure registries and docker.io mirrors
    # IPv6 (docs/ipv6.md): the default network's IPv6 subnet and gateway ("": IPv4 only, Docker's default), and
    # where `--ipv6` networks without a subnet take theirs ("": a ULA /48 derived from the instance ID).
    default_subnet6: str = ""
    default_gateway6: str = ""
    pool6: str = ""
    # Multi-host overlay networks (docs/overlay.md); empty cluster_store: a single host, no etcd needed.
    cluster_store: str = ""  # etcd://HOST:PORT[,HOST:PORT...]
    advertise_addr: str = ""  # this host's underlay address (VXLAN tunnel endpoint)
    node_name: str = ""  # default: the host name
    cluster_ttl: int = 15  # seconds: a host silent this long is dead, its endpoints and addresses released


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
        registry=registry_config(env),
        default_subnet6=env.get("HYPR_DEFAULT_SUBNET6") or "",
        default_gateway6=env.get("HYPR_DEFAULT_GATEWAY6") or "",
        pool6=env.get("HYPR_DEFAULT_POOL6") or _daemon_json_pool6(env),
        **cluster_config(env),
    )


def cluster_config(env: dict[str, str]) -> dict[str, Any]:
    """dockerd's `cluster-store` and `cluster-advertise` keys of daemon.json (plus hypr's `node-name` and
    `cluster-ttl`), overridden by HYPR_CLUSTER_STORE, HYPR_ADVERTISE_ADDR, HYPR_NODE_NAME and HYPR_CLUSTER_TTL."""
    data = _daemon_json(env)
    ttl = env.get("HYPR_CLUSTER_TTL") or data.get("cluster-ttl") or 15
    try:
        ttl = int(ttl)
    except ValueError:
        raise ValueError(f"cluster TTL {ttl!r}: expected whole seconds") from None
    return {
        "cluster_store": str(env.get("HYPR_CLUSTER_STORE") or data.get("cluster-store") or ""),
        "advertise_addr": str(env.get("HYPR_ADVERTISE_ADDR") or data.get("cluster-advertise") or ""),
        "node_name": str(env.get("HYPR_NODE_NAME") or data.get("node-name") or ""),
        "cluster_ttl": ttl,
    }


def _daemon_json(env: dict[str, str]) -> dict[str, Any]:
    path = Path(env.get("HYPR_CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return loaded if isinstance(loaded, dict) else {}


def _daemon_json_pool6(env: dict[str, str]) -> str:
    """The first IPv6 entry of daemon.json's `default-address-pools` (Docker's key: `{"base": "fd..::/48",
    "size": 64}`) as `base,size`; "" when there is none."""
    for entry in _daemon_json(env).get("default-address-pools") or []:
        if isinstance(entry, dict) and ":" in str(entry.get("base", "")):
            return f"{entry['base']},{entry.get('size', 64)}"
    return ""


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in (part.strip() for part in text.replace(",", " ").split()) if w)


def registry_config(env: dict[str, str]) -> RegistryConfig:
    """dockerd's `insecure-registries` and `registry-mirrors`, from HYPR_CONFIG_FILE (default
    /etc/hypr/daemon.json, Docker's daemon.json keys) and HYPR_INSECURE_REGISTRIES / HYPR_REGISTRY_MIRRORS
    (comma- or space-separated), the environment adding to the file; HYPR_REGISTRIES_CONF (or containers'
    CONTAINERS_REGISTRIES_CONF) names a registries.conf for skopeo other than /etc/containers/registries.conf."""
    data: dict[str, Any] = {}
    path = Path(env.get("HYPR_CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    try:
        loaded = json.loads(path.read_text())
        data = loaded if isinstance(loaded, dict) else {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    insecure = tuple(str(x) for x in data.get("insecure-registries") or [])
    mirrors = tuple(str(x) for x in data.get("registry-mirrors") or [])
    return RegistryConfig(
        insecure=insecure + _words(env.get("HYPR_INSECURE_REGISTRIES", "")),
        mirrors=mirrors + _words(env.get("HYPR_REGISTRY_MIRRORS", "")),
        registries_conf=env.get("HYPR_REGISTRIES_CONF") or env.get("CONTAINERS_REGISTRIES_CONF") or "",
    )


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """`1.1.1.1,9.9.9.9:5353,2001:db8::53,[2001:db8::54]:5353` -> ((host, port), ...)."""
    upstreams = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item.startswith("["):  # [2001:db8::53]:5353
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        elif item.count(":") > 1:  # a bare IPv6 address
            host, port = item, ""
        else:
            host, _, port = item.partition(":")
        upstreams.append((host, int(port or 53)))
    return tuple(upstreams)
