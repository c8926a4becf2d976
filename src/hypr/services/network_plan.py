"""Network requests, validated as a pure step: Docker's create body + a read-only view of what exists -> a
`Network` row ready to insert, or a `HyprError` with Docker's message. No I/O happens here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, TypeVar

from hypr import ipam, names
from hypr.errors import Conflict, Forbidden, InvalidParameter, NotFound
from hypr.models import (
    DEFAULT_NETWORK,
    DRIVER,
    OPT_BRIDGE_NAME,
    OPT_GATEWAY_MODE6,
    OPT_ICC,
    OPT_MASQUERADE,
    OPT_MTU,
    OVERLAY,
    HostRoute,
    HostView,
    Network,
    Snapshot,
)
from hypr.services.validation import (
    label_matches,
    new_id,
    now_rfc3339,
    parse_bool,
    parse_created,
    parse_until,
    string_map,
)

PREDEFINED = (DEFAULT_NETWORK, "host", "none")
LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("until", "label", "label!")


def route_conflict(subnet: IPv4Network | IPv6Network, host: HostView) -> HostRoute | None:
    return next(
        (r for r in host.routes if r.dst.prefixlen > 0 and r.dst.version == subnet.version and subnet.overlaps(r.dst)),
        None,
    )


def plan_default_network(
    subnet_text: str, gateway_text: str, host: HostView, subnet6_text: str = "", gateway6_text: str = ""
) -> Network:
    """The predefined `bridge` network (vbr0): IPv4 from HYPR_DEFAULT_SUBNET/GATEWAY, and IPv6 as well when
    HYPR_DEFAULT_SUBNET6 is set (it stays IPv4 otherwise, as Docker's default bridge)."""
    subnet, gateway = _default_family("", subnet_text, gateway_text, host, ipam.parse_subnet, ipam.parse_address)
    subnet6 = gateway6 = None
    if subnet6_text:
        subnet6, gateway6 = _default_family(
            "6", subnet6_text, gateway6_text, host, ipam.parse_subnet6, ipam.parse_address6
        )
    return Network(
        id=new_id(), name=DEFAULT_NETWORK, bridge=names.bridge_name(0), subnet=subnet, gateway=gateway,
        options={OPT_BRIDGE_NAME: names.bridge_name(0)}, ipam_options=None, created=now_rfc3339(),
        subnet6=subnet6, gateway6=gateway6,
    )  # fmt: skip


_Net = TypeVar("_Net", IPv4Network, IPv6Network)
_Addr = TypeVar("_Addr", IPv4Address, IPv6Address)


def _default_family(
    suffix: str, subnet_text: str, gateway_text: str, host: HostView,
    parse_subnet: Callable[[str], _Net], parse_address: Callable[[str, _Net, str], _Addr],
) -> tuple[_Net, _Addr]:  # fmt: skip
    """One family of the default network from HYPR_DEFAULT_SUBNET<suffix>/HYPR_DEFAULT_GATEWAY<suffix>: a valid
    subnet clear of the host's routes, and its gateway (the first address unless given)."""
    subnet_env, gateway_env = f"HYPR_DEFAULT_SUBNET{suffix}", f"HYPR_DEFAULT_GATEWAY{suffix}"
    try:
        subnet = parse_subnet(subnet_text)
        gateway = parse_address(gateway_text or str(subnet.network_address + 1), subnet, "gateway")
    except InvalidParameter as exc:
        raise InvalidParameter(f"{subnet_env}/{gateway_env}: {exc.message}") from None
    clash = route_conflict(subnet, host)
    if clash:
        raise Forbidden(
            f"default network subnet {subnet} overlaps the host route {clash}, which hypr does not own; "
            f"set {subnet_env} (and {gateway_env}) to a free range"
        )
    return subnet, gateway


def plan_network_create(
    body: Any, snapshot: Snapshot, host: HostView, pool6: ipam.DefaultPool6 | None = None
) -> Network:
    """`pool6`: where `EnableIPv6` networks without an IPv6 subnet take one (default: a ULA /48, `ula_pool`)."""
    if not isinstance(body, Mapping):
        raise InvalidParameter("invalid JSON: expected an object")
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidParameter("network name is required")
    if name in PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    if any(n.name == name for n in snapshot.networks):
        raise Conflict(f"network with name {name} already exists")
    driver = body.get("Driver") or DRIVER
    if driver not in (DRIVER, OVERLAY):
        raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found")
    _refuse_unsupported(body)
    enable4 = parse_bool("EnableIPv4", True if body.get("EnableIPv4") is None else body["EnableIPv4"])
    enable6 = parse_bool("EnableIPv6", body.get("EnableIPv6") or False)
    if not enable4 and not enable6:
        raise InvalidParameter("IPv4 or IPv6 must be enabled")  # Docker 28's message
    if enable6 and driver == OVERLAY:
        raise InvalidParameter("IPv6 on overlay networks is not supported by hypr yet (the VXLAN entries are IPv4)")
    options = string_map("options", body.get("Options"))
    labels = string_map("labels", body.get("Labels"))
    configs4, configs6 = _split_configs(body.get("IPAM"))
    if configs6 and not enable6:
        raise InvalidParameter("invalid network config: an IPv6 subnet needs EnableIPv6 (--ipv6)")
    if configs4 and not enable4:
        raise InvalidParameter("invalid network config: an IPv4 subnet was given but IPv4 is disabled (--ipv4=false)")
    ipam_options = _ipam_options(body.get("IPAM"))
    subnet, gateway, ip_range, aux = _plan_ipam(configs4, snapshot, host) if enable4 else (None, None, None, {})
    subnet6, gateway6, ip_range6 = (
        _plan_ipam6(configs6, snapshot, host, pool6 or ipam.ula_pool("")) if enable6 else (None, None, None)
    )
    routed6 = _gateway_mode6(options)
    bridge = _plan_bridge_name(options, snapshot, host)
    return Network(
        id=new_id(), name=name, bridge=bridge, subnet=subnet, gateway=gateway, ip_range=ip_range,
        aux_addresses=aux, internal=parse_bool("Internal", body.get("Internal", False)), mtu=_plan_mtu(options),
        icc=parse_bool(OPT_ICC, options.get(OPT_ICC, True)),
        masquerade=parse_bool(OPT_MASQUERADE, options.get(OPT_MASQUERADE, True)),
        labels=labels, options=options, ipam_options=ipam_options, created=now_rfc3339(), driver=driver,
        subnet6=subnet6, gateway6=gateway6, ip_range6=ip_range6, routed6=routed6,
        attachable=parse_bool("Attachable", body.get("Attachable", False)),
    )  # fmt: skip


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    """Network create fields hypr cannot honour, refused by name (never stored and ignored)."""
    config_from = body.get("ConfigFrom")
    if body.get("ConfigOnly") or (isinstance(config_from, Mapping) and config_from.get("Network")):
        raise InvalidParameter(
            "--config-only and --config-from are not supported by hypr: config-only networks carry settings for "
            "swarm-scoped and macvlan/ipvlan networks, which hypr does not have; create the bridge network with its "
            "settings instead"
        )
    if body.get("Ingress"):
        raise InvalidParameter("--ingress is not supported by hypr: it is a swarm routing-mesh network")
    overlay_scope = body.get("Driver") == OVERLAY and body.get("Scope") in ("global", "swarm")  # cluster-wide anyway
    if body.get("Scope") not in (None, "", "local") and not overlay_scope:
        raise InvalidParameter(f"--scope {body['Scope']} is not supported by hypr: its networks are local")


def _is_v6(config: Mapping[str, Any]) -> bool:
    """An IPAM config entry is IPv6 when its subnet (or, lacking one, its gateway or range) is."""
    return ":" in str(config.get("Subnet") or config.get("Gateway") or config.get("IPRange") or "")


def _split_configs(raw: Any) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidParameter("invalid IPAM: expected an object")
    configs = raw.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, Mapping) for c in configs):
        raise InvalidParameter("invalid IPAM config: expected a list of objects")
    return [c for c in configs if not _is_v6(c)], [c for c in configs if _is_v6(c)]


def _gateway_mode6(options: Mapping[str, str]) -> bool:
    """Docker's `gateway_mode_ipv6`: `nat` (the default: NAT66 to the outside) or `routed` (no NAT)."""
    mode = options.get(OPT_GATEWAY_MODE6, "nat")
    if mode not in ("nat", "routed"):
        raise InvalidParameter(f"invalid {OPT_GATEWAY_MODE6} {mode!r}: hypr supports nat and routed")
    return mode == "routed"


def _plan_ipam6(
    configs: list[Mapping[str, Any]], snapshot: Snapshot, host: HostView, pool6: ipam.DefaultPool6
) -> tuple[IPv6Network, IPv6Address, IPv6Network | None]:
    """The IPv6 subnet: as given (checked against other networks and the host's routes), or the first free
    prefix of `pool6`; its gateway (the first address unless given) and an optional range."""
    if len(configs) > 1:
        raise InvalidParameter("hypr networks have one IPv6 subnet; got several IPv6 IPAM configs")
    config = configs[0] if configs else {}
    if config.get("AuxiliaryAddresses"):
        raise InvalidParameter("auxiliary addresses are not supported on IPv6 subnets by hypr")
    taken = [n.subnet6 for n in snapshot.networks if n.subnet6 is not None]
    if config.get("Subnet"):
        subnet = ipam.parse_subnet6(str(config["Subnet"]))
        ipam.check_overlap6(subnet, taken)
        clash = route_conflict(subnet, host)
        if clash:
            raise Forbidden(f"{ipam.OVERLAP6}: subnet {subnet} overlaps the host route {clash}")
    elif config.get("IPRange") or config.get("Gateway"):
        raise InvalidParameter("invalid network config: an IP range or gateway needs a subnet")
    else:
        routes = [r.dst for r in host.routes if r.dst.prefixlen > 0 and isinstance(r.dst, IPv6Network)]
        subnet = ipam.auto_subnet6(pool6, [*taken, *routes])
    ip_range = ipam.parse_ip_range(str(config["IPRange"]), subnet) if config.get("IPRange") else None
    gateway = (
        ipam.parse_address6(str(config["Gateway"]), subnet, "gateway")
        if config.get("Gateway")
        else IPv6Address(int(subnet.network_address) + 1)
    )
    return subnet, gateway, ip_range


def _ipam_options(raw: Any) -> dict[str, str] | None:
    """The IPAM driver (only Docker's `default`) and its options, echoed by inspect (None: the client sent none)."""
    raw = raw or {}
    if (raw.get("Driver") or "default") != "default":
        raise InvalidParameter(f'IPAM driver {raw["Driver"]} is not supported (only "default")')
    return None if raw.get("Options") is None else string_map("IPAM options", raw["Options"])


def _plan_ipam(
    configs: list[Mapping[str, Any]], snapshot: Snapshot, host: HostView
) -> tuple[IPv4Network, IPv4Address, IPv4Network | None, dict[str, IPv4Address]]:
    """The IPv4 subnet: as given (checked against other networks and the host's routes) or the first free /16 of
    hypr's pool; its gateway (the first address unless given), an optional range and auxiliary addresses."""
    if len(configs) > 1:
        raise InvalidParameter("hypr networks have one IPv4 subnet; got several IPAM configs")
    config = configs[0] if configs else {}
    taken = [n.subnet for n in snapshot.networks if n.subnet is not None]
    if config.get("Subnet"):
        subnet = ipam.parse_subnet(str(config["Subnet"]))
        ipam.check_overlap(subnet, taken)
        clash = route_conflict(subnet, host)
        if clash:
            raise Forbidden(f"{ipam.OVERLAP}: subnet {subnet} overlaps the host route {clash}")
    elif config.get("IPRange") or config.get("Gateway") or config.get("AuxiliaryAddresses"):
        raise InvalidParameter("invalid network config: an IP range, gateway or auxiliary address needs a subnet")
    else:
        subnet = ipam.auto_subnet(
            [*taken, *(r.dst for r in host.routes if r.dst.prefixlen > 0 and isinstance(r.dst, IPv4Network))]
        )
    ip_range = ipam.parse_ip_range(str(config["IPRange"]), subnet) if config.get("IPRange") else None
    gateway = (
        ipam.parse_address(str(config["Gateway"]), subnet, "gateway")
        if config.get("Gateway")
        else ipam.first_host(subnet)
    )
    aux = {
        key: ipam.parse_address(str(value), subnet, f"auxiliary address {key}")
        for key, value in string_map("auxiliary addresses", config.get("AuxiliaryAddresses")).items()
    }
    return subnet, gateway, ip_range, aux


def _plan_bridge_name(options: Mapping[str, str], snapshot: Snapshot, host: HostView) -> str:
    used = {n.bridge for n in snapshot.networks}
    if OPT_BRIDGE_NAME in options:
        name = options[OPT_BRIDGE_NAME]
        problem = names.interface_name_problem(name)
        if problem:
            raise InvalidParameter(f"invalid {OPT_BRIDGE_NAME}: {problem}")
        if name in used:
            raise Forbidden(f"bridge name {name} is already used by another network")
        if name in host.interfaces:
            raise Forbidden(f"bridge name {name} is already an interface on this host")
        return name
    return next(
        name
        for name in map(names.bridge_name, range(1, 100_000))
        if name not in used and name not in host.interfaces  # one by one: the host's are looked up as asked
    )


def _plan_mtu(options: Mapping[str, str]) -> int:
    text = options.get(OPT_MTU)
    if text is None:
        return 1500
    try:
        mtu = int(text)
    except ValueError:
        mtu = 0
    if not 68 <= mtu <= 65535:
        raise InvalidParameter(f"invalid MTU number: {text} (must be between 68 and 65535)")
    return mtu


# -- finding, listing, pruning -------------------------------------------------------------------------------------


def find_network(snapshot: Snapshot, ref: str) -> Network:
    """Docker's lookup order: full ID, exact name, then a unique ID prefix."""
    exact = [n for n in snapshot.networks if n.id == ref] or [n for n in snapshot.networks if n.name == ref]
    if exact:
        return exact[0]
    prefixed = [n for n in snapshot.networks if ref and n.id.startswith(ref)]
    if len(prefixed) > 1:
        raise InvalidParameter(f"network {ref} is ambiguous ({len(prefixed)} matches found based on ID prefix)")
    if not prefixed:
        raise NotFound(f"network {ref} not found")
    return prefixed[0]


def scope(network: Network) -> str:
    """Docker's Scope: `global` for networks kept in the cluster store (overlays), else `local`."""
    return "global" if network.driver == OVERLAY else "local"


def in_use(snapshot: Snapshot, network_id: str) -> bool:
    """True when a running workload is attached. A stopped one keeps its config, not an endpoint, in Docker: its
    network can be removed or pruned (starting it afterwards fails by the network's name)."""
    running = {w.id for w in snapshot.workloads if w.state == "running"}
    return any(e.network_id == network_id and e.workload_id in running for e in snapshot.endpoints)


def check_filters(filters: Mapping[str, Iterable[str]], allowed: Iterable[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")


def list_networks(snapshot: Snapshot, filters: Mapping[str, list[str]]) -> list[Network]:
    check_filters(filters, LIST_FILTERS)
    return [n for n in snapshot.networks if all(_list_match(snapshot, n, k, v) for k, v in filters.items() if v)]


def _list_match(snapshot: Snapshot, n: Network, key: str, values: list[str]) -> bool:
    if key == "dangling":
        wanted = {parse_bool("dangling", v) for v in values}
        return (not n.builtin and not in_use(snapshot, n.id)) in wanted
    if key == "driver":
        return n.driver in values
    if key == "id":
        return any(v in n.id for v in values)
    if key == "label":
        return all(label_matches(n.labels, v) for v in values)
    if key == "name":
        return any(v in n.name for v in values)
    if key == "scope":
        return scope(n) in values
    if key == "type":
        for v in values:
            if v not in ("custom", "builtin"):
                raise InvalidParameter(f"invalid filter: 'type'='{v}'")
        return ("builtin" if n.builtin else "custom") in values
    return True


# Docker's other predefined networks: no bridge, no addresses; a workload joins them by network mode only.
PREDEFINED_DRIVERS = {"host": "host", "none": "null"}


def predefined_id(snapshot: Snapshot, name: str) -> str:
    """A stable 64-hex ID for `host`/`none`, derived from the default bridge's (so it is per daemon, as Docker's)."""
    bridge = next((n.id for n in snapshot.networks if n.builtin), "")
    return hashlib.sha256(f"{bridge}/{name}".encode()).hexdigest()


def find_predefined(snapshot: Snapshot, ref: str) -> str | None:
    """`host` or `none` when `ref` names one of them (name, ID or unique ID prefix of theirs), else None."""
    for name in PREDEFINED_DRIVERS:
        ident = predefined_id(snapshot, name)
        if ref in (name, ident) or (len(ref) >= 1 and ident.startswith(ref) and not _prefix_taken(snapshot, ref)):
            return name
    return None


def _prefix_taken(snapshot: Snapshot, ref: str) -> bool:
    return any(n.id.startswith(ref) or n.name == ref for n in snapshot.networks)


def list_predefined(snapshot: Snapshot, filters: Mapping[str, list[str]]) -> list[str]:
    """`host` and `none` as `network ls` filters see them: builtin, local, no labels, never dangling."""
    check_filters(filters, LIST_FILTERS)

    def match(name: str, key: str, values: list[str]) -> bool:
        if key == "dangling":
            return False in {parse_bool("dangling", v) for v in values}
        if key == "driver":
            return PREDEFINED_DRIVERS[name] in values
        if key == "id":
            return any(v in predefined_id(snapshot, name) for v in values)
        if key == "name":
            return any(v in name for v in values)
        return ("local" if key == "scope" else "builtin") in values if key in ("scope", "type") else False

    return [n for n in PREDEFINED_DRIVERS if all(match(n, k, v) for k, v in filters.items() if v)]


def prune_candidates(snapshot: Snapshot, filters: Mapping[str, list[str]], now: datetime) -> list[Network]:
    """Custom networks with no endpoints that pass Docker's prune filters (`until`, `label`, `label!`)."""
    check_filters(filters, PRUNE_FILTERS)
    untils = [parse_until(v, now) for v in filters.get("until", [])]
    chosen = []
    for n in snapshot.networks:
        if n.builtin or in_use(snapshot, n.id):
            continue
        if any(parse_created(n.created) >= until for until in untils):
            continue
        if not all(label_matches(n.labels, v) for v in filters.get("label", [])):
            continue
        if any(label_matches(n.labels, v) for v in filters.get("label!", [])):
            continue
        chosen.append(n)
    return chosen
