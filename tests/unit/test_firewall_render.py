"""The firewall renderer: golden files per scenario, determinism, and properties no golden file shows by itself.

Regenerate the golden files with `HYPR_UPDATE_GOLDEN=1 pytest tests/unit/test_firewall_render.py`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address
from pathlib import Path

import pytest

from hypr.errors import Conflict
from hypr.models import Endpoint, Network, PortMapping, Protocol, Snapshot, Workload
from hypr.reconcile.firewall import FirewallSettings, foreign_drops, numbered, published_ports, render, sysctls
from hypr.reconcile.firewall import tables as firewall_tables
from hypr.reconcile.nft import update

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "firewall"
ANY = IPv4Address("0.0.0.0")


def network(n: int, subnet: str, name: str = "", **kw: object) -> Network:
    net = IPv4Network(subnet)
    return Network(
        id=f"{n:064x}",
        name=name or ("bridge" if n == 0 else f"net{n}"),
        bridge=f"vbr{n}",
        subnet=net,
        gateway=net.network_address + 1,
        **kw,  # type: ignore[arg-type]
    )


def workload(name: str) -> Workload:
    return Workload(id=name.encode().hex().ljust(64, "0"), name=name, image="alpine")


def attach(w: Workload, net: Network, host: int, position: int = 0) -> Endpoint:
    ip = net.subnet.network_address + host
    return Endpoint(
        id=f"{w.id[:8]}{net.id[-8:]}".ljust(64, "e"),
        workload_id=w.id,
        network_id=net.id,
        ip=ip,
        mac="02:42:" + ":".join(f"{b:02x}" for b in ip.packed),
        host_ifname=f"hv{w.name[:4]}{net.bridge[3:]}",
        position=position,
    )


def port(w: Workload, host: int, guest: int, proto: Protocol = "tcp", host_ip: str = "0.0.0.0") -> PortMapping:
    return PortMapping(w.id, ip_address(host_ip), host, guest, proto)


DEFAULT = network(0, "192.0.2.0/24")
APP = network(1, "198.51.100.0/24", "app")
INTERNAL = network(2, "203.0.113.0/24", "backend", internal=True)
WEB, DB, CACHE = workload("web"), workload("db"), workload("cache")


def scenario_default_only() -> Snapshot:
    return Snapshot(networks=(DEFAULT,), workloads=(WEB,), endpoints=(attach(WEB, DEFAULT, 2),))


def scenario_two_networks() -> Snapshot:
    return Snapshot(
        networks=(APP, DEFAULT),  # deliberately unsorted: output order must not depend on input order
        workloads=(WEB, DB),
        endpoints=(attach(DB, APP, 2), attach(WEB, DEFAULT, 2)),
    )


def scenario_internal_network() -> Snapshot:
    return Snapshot(
        networks=(DEFAULT, INTERNAL),
        workloads=(WEB, DB),
        endpoints=(attach(WEB, DEFAULT, 2), attach(DB, INTERNAL, 2)),
    )


def scenario_published_ports() -> Snapshot:
    ports = (
        port(WEB, 8080, 80),
        port(WEB, 8443, 443, host_ip="192.0.2.1"),  # one host address
        port(WEB, 9000, 9000, host_ip="127.0.0.1"),  # loopback only
        port(DB, 5353, 53, "udp"),
        *(port(DB, 8000 + i, 80 + i) for i in range(3)),  # -p 8000-8002:80-82
    )
    return Snapshot(
        networks=(DEFAULT,),
        workloads=(WEB, DB),
        endpoints=(attach(WEB, DEFAULT, 2), attach(DB, DEFAULT, 3)),
        ports=ports,
    )


def scenario_multi_network_workload() -> Snapshot:
    # web sits on the internal network first (position 0) and on app second: its ports go to its app address.
    return Snapshot(
        networks=(DEFAULT, APP, INTERNAL),
        workloads=(WEB, DB, CACHE),
        endpoints=(
            attach(WEB, INTERNAL, 2, position=0),
            attach(WEB, APP, 2, position=1),
            attach(DB, INTERNAL, 3),
            attach(CACHE, DEFAULT, 2),
        ),
        ports=(port(WEB, 8080, 80), port(DB, 5432, 5432)),  # db has no non-internal network: skipped
    )


def scenario_icc_disabled() -> Snapshot:
    net = replace(APP, icc=False, masquerade=False)
    return Snapshot(
        networks=(net,),
        workloads=(WEB, DB),
        endpoints=(attach(WEB, net, 2), attach(DB, net, 3)),
        ports=(
            port(WEB, 8080, 80),
            port(WEB, 8443, 443, host_ip="2001:db8:ffff::1"),
            port(CACHE, 9000, 90, host_ip="::"),
        ),
    )


def scenario_empty() -> Snapshot:
    return Snapshot()


def dual(net: Network, subnet6: str, **kw: object) -> Network:
    six = IPv6Network(subnet6)
    return replace(net, subnet6=six, gateway6=six.network_address + 1, **kw)  # type: ignore[arg-type]


def attach6(w: Workload, net: Network, host: int, position: int = 0) -> Endpoint:
    assert net.subnet6 is not None
    return replace(attach(w, net, host, position), ip6=net.subnet6.network_address + host)


def scenario_dual_stack() -> Snapshot:
    app = dual(APP, "2001:db8:1::/64")  # NAT66 (Docker's default)
    routed = dual(network(3, "192.0.2.128/25", "edge"), "2001:db8:3::/64", routed6=True, icc=False)
    internal = dual(INTERNAL, "2001:db8:2::/64")
    return Snapshot(
        networks=(DEFAULT, app, internal, routed),
        workloads=(WEB, DB, CACHE),
        endpoints=(
            attach6(WEB, app, 2),
            attach6(DB, internal, 3),
            replace(attach6(CACHE, routed, 2), gw_priority=1),  # edge carries cache's ports
            attach(CACHE, DEFAULT, 2, position=1),
        ),
        ports=(
            port(WEB, 8080, 80),
            port(WEB, 8443, 443, host_ip="2001:db8:ffff::1"),
            port(CACHE, 9000, 90, host_ip="::"),
        ),
    )


def only6(n: int, subnet6: str, name: str, **kw: object) -> Network:
    """An IPv6-only network (EnableIPv4: false): no IPv4 subnet or gateway at all."""
    six = IPv6Network(subnet6)
    return Network(id=f"{n:064x}", name=name, bridge=f"vbr{n}", subnet=None, gateway=None, subnet6=six,
                   gateway6=six.network_address + 1, **kw)  # type: ignore[arg-type]  # fmt: skip


def attach_only6(w: Workload, net: Network, host: int, position: int = 0) -> Endpoint:
    assert net.subnet6 is not None
    ip6 = net.subnet6.network_address + host
    return Endpoint(id=f"{w.id[:8]}{net.id[-8:]}".ljust(64, "e"), workload_id=w.id, network_id=net.id, ip=None,
                    mac="02:42:" + ":".join(f"{b:02x}" for b in ip6.packed[-4:]),
                    host_ifname=f"hv{w.name[:4]}{net.bridge[3:]}", position=position, ip6=ip6)  # fmt: skip


def scenario_ipv6_only() -> Snapshot:
    six = only6(1, "2001:db8:6::/64", "six")
    vault = only6(2, "2001:db8:7::/64", "vault", internal=True, icc=False)
    return Snapshot(
        networks=(DEFAULT, six, vault),
        workloads=(WEB, DB, CACHE),
        endpoints=(
            attach_only6(WEB, six, 2),
            attach_only6(DB, vault, 2),
            attach(CACHE, DEFAULT, 2),
            attach_only6(CACHE, six, 3, position=1),  # an IPv4-only workload connected to an IPv6-only network
        ),
        ports=(port(WEB, 8080, 80, host_ip="::"),),  # `-p 8080:80` of an IPv6-only workload: [::] alone
    )


SCENARIOS: dict[str, Callable[[], Snapshot]] = {
    "empty": scenario_empty,
    "default-only": scenario_default_only,
    "two-networks": scenario_two_networks,
    "internal-network": scenario_internal_network,
    "published-ports": scenario_published_ports,
    "multi-network-workload": scenario_multi_network_workload,
    "icc-disabled": scenario_icc_disabled,
    "dual-stack": scenario_dual_stack,
    "ipv6-only": scenario_ipv6_only,
}

TITLES = {
    "empty": "No networks: both tables exist, empty of per-network rules",
    "default-only": "The default network `bridge` (vbr0, 192.0.2.0/24) with one workload",
    "two-networks": "Two networks, isolated from each other: `bridge` (vbr0) and `app` (vbr1)",
    "internal-network": "`bridge` plus an internal network `backend` (vbr2): no way in or out",
    "published-ports": "Published ports: `8080:80`, `192.0.2.1:8443:443`, `127.0.0.1:9000:9000`, "
    "`5353:53/udp` and the range `8000-8002:80-82`",
    "multi-network-workload": "A workload on an internal and a normal network publishes `8080:80`; "
    "one on an internal network only is skipped",
    "icc-disabled": "`app` with `enable_icc=false` and `enable_ip_masquerade=false`",
    "dual-stack": "IPv6: `app` dual-stack with NAT66, internal `backend` dual-stack, `edge` with "
    "`gateway_mode_ipv6=routed` and icc off; `cache` also on the IPv4-only `bridge`; `8080:80` on both families, "
    "`[2001:db8:ffff::1]:8443:443`; cache's `[::]:9000:90` on routed `edge`: DNAT'd, and port 90 open on its address",
    "ipv6-only": "IPv6-only networks: `six` with web publishing `8080:80` (on `[::]` alone), internal `vault` with "
    "icc off; `cache` on the IPv4-only `bridge` and on `six`. No IPv4 rule, address or port for either network",
}


def golden_text(name: str, snapshot: Snapshot) -> str:
    body = render(snapshot)
    knobs = "".join(f"- `{path}` = `{value}`\n" for path, value in sysctls(snapshot))
    return (
        f"# {TITLES[name]}\n\n"
        "Generated by tests/unit/test_firewall_render.py; regenerate with `HYPR_UPDATE_GOLDEN=1`.\n\n"
        f"Sysctls:\n{knobs}\n"
        f"```nft\n{body}```\n"
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.md"
    text = golden_text(name, SCENARIOS[name]())
    if os.environ.get("HYPR_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{path} is stale; regenerate with HYPR_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_render_is_deterministic(name: str) -> None:
    snapshot = SCENARIOS[name]()
    shuffled = Snapshot(
        networks=tuple(reversed(snapshot.networks)),
        workloads=tuple(reversed(snapshot.workloads)),
        endpoints=tuple(reversed(snapshot.endpoints)),
        ports=tuple(reversed(snapshot.ports)),
    )
    assert render(snapshot) == render(snapshot) == render(shuffled)


def test_create_then_delete_equals_never_created() -> None:
    before = scenario_default_only()
    after = Snapshot(
        networks=(*before.networks, APP),
        workloads=(*before.workloads, DB),
        endpoints=(*before.endpoints, attach(DB, APP, 2)),
        ports=(port(DB, 8080, 80),),
    )
    assert render(after) != render(before)
    assert render(replace(after, networks=before.networks, endpoints=before.endpoints, ports=())) == render(before)


def test_script_replaces_tables_atomically() -> None:
    lines = render(scenario_default_only()).splitlines()
    for family in ("inet", "bridge"):
        at = lines.index(f"table {family} hypr {{}}")
        assert lines[at + 1] == f"delete table {family} hypr"
        assert lines[at + 2] == f"table {family} hypr {{"


def test_loopback_publishing_never_matches_prerouting() -> None:
    text = render(scenario_published_ports())
    prerouting = text.split("chain prerouting {")[1].split("}")[0]
    dnat_rules = [line for line in prerouting.splitlines() if "dnat" in line]
    assert dnat_rules and all("ip daddr != 127.0.0.0/8" in line for line in dnat_rules)


def test_every_base_chain_accepts_by_default() -> None:
    hooks = [line for line in render(scenario_multi_network_workload()).splitlines() if " hook " in line]
    assert len(hooks) == 7  # five inet, two bridge
    assert all(line.rstrip().endswith("policy accept;") for line in hooks)


def test_into_bridge_drops_precede_egress_accepts() -> None:
    forward = render(scenario_two_networks()).split("chain forward {")[1].split("}")[0].splitlines()
    last_drop = max(i for i, line in enumerate(forward) if line.strip().startswith("oifname") and "drop" in line)
    first_egress = min(i for i, line in enumerate(forward) if 'comment "egress"' in line)
    assert last_drop < first_egress


def test_port_target_is_first_non_internal_endpoint() -> None:
    [entry] = published_ports(scenario_multi_network_workload())
    assert entry.target == IPv4Address("198.51.100.2")


def test_same_host_port_twice_conflicts() -> None:
    snapshot = scenario_default_only()
    doubled = replace(snapshot, ports=(port(WEB, 8080, 80), port(WEB, 8080, 81)))
    with pytest.raises(Conflict, match=re.escape("Bind for 0.0.0.0:8080 failed: port is already allocated")):
        render(doubled)


def test_same_port_number_tcp_and_udp_do_not_conflict() -> None:
    snapshot = replace(scenario_default_only(), ports=(port(WEB, 53, 53), port(WEB, 53, 53, "udp")))
    assert len(published_ports(snapshot)) == 2


def test_unquotable_interface_name_is_refused() -> None:
    bad = replace(DEFAULT, bridge='br"0')
    with pytest.raises(ValueError, match="cannot express"):
        render(Snapshot(networks=(bad,)))


def test_settings_change_dns_port_and_host_access() -> None:
    text = render(scenario_default_only(), FirewallSettings(dns_port=5300, workloads_reach_host=False))
    assert "redirect to :5300" in text
    assert 'iifname "vbr0" drop comment "no other host services"' in text
    assert "th dport { 53, 5300 }" in text


def test_internal_network_reaches_only_the_gateways_dns_and_ping() -> None:
    chain = render(scenario_internal_network()).split("chain input {", 1)[1].split("\n\t}", 1)[0]
    rules = [line.strip() for line in chain.splitlines() if line.strip().startswith('iifname "vbr2"')]
    assert [r.rsplit(" comment", 1)[0].rsplit(" ", 1)[-1] for r in rules] == ["accept", "accept", "accept", "drop"]
    assert "ip daddr 203.0.113.1 icmp type echo-request accept" in rules[2]


def test_sysctls_cover_forwarding_and_non_internal_bridges() -> None:
    assert sysctls(scenario_internal_network()) == [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/vbr0/route_localnet", "1"),
    ]


def test_icc_off_needs_br_netfilter_and_no_bridge_family_drop() -> None:
    snapshot = SCENARIOS["icc-disabled"]()
    assert ("net/bridge/bridge-nf-call-iptables", "1") in sysctls(snapshot)
    assert "net/bridge/bridge-nf-call-iptables" not in dict(sysctls(scenario_default_only()))
    bridge_table = render(snapshot).split("table bridge hypr {\n", 1)[1]
    assert "drop" not in bridge_table.split("chain forward {", 1)[1].replace("jump spoof", "")


def test_foreign_drop_policies_are_reported_ours_and_accepting_ones_not() -> None:
    def chain(family: str, table: str, name: str, hook: str | None, policy: str | None) -> dict[str, object]:
        base = {"hook": hook, "policy": policy, "type": "filter", "prio": 0} if hook else {}
        return {"chain": {"family": family, "table": table, "name": name, **base}}

    ruleset = json.dumps({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        chain("ip", "filter", "FORWARD", "forward", "drop"),  # Docker's forward policy
        chain("inet", "firewalld", "filter_INPUT", "input", "drop"),
        chain("inet", "hypr", "forward", "forward", "drop"),  # ours (never rendered so, but not foreign)
        chain("ip", "filter", "INPUT", "input", "accept"),
        chain("ip6", "filter", "FORWARD", "forward", "drop"),  # IPv6: hypr networks are IPv4-only
        chain("ip", "filter", "DOCKER", None, None),  # a regular chain has no policy
    ]})  # fmt: skip
    warnings = foreign_drops(ruleset)
    assert [w.split(" has ")[0] for w in warnings] == [
        "table ip filter chain FORWARD (hook forward)",
        "table inet firewalld chain filter_INPUT (hook input)",
    ]
    assert "docs/troubleshooting.md" in warnings[0]
    assert foreign_drops(json.dumps({"nftables": []})) == []


def test_numbered_marks_cited_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(1, 11))
    out = numbered(text, Exception("<cmdline>:5:3-7: Error: syntax error"))
    assert "    5> line 5" in out
    assert "line 1\n" not in out and "line 10" not in out


# -- incremental updates (nft.update): what the daemon applies between full reconciles ---------------------------


def test_an_update_to_the_same_tables_is_empty() -> None:
    tables = firewall_tables(scenario_published_ports())
    assert update(tables, tables) == ""


def test_publishing_ports_updates_elements_only() -> None:
    after = scenario_published_ports()
    before = replace(after, ports=())
    text = update(firewall_tables(before), firewall_tables(after))
    assert text is not None and text.startswith("add element inet hypr published_")
    assert "flush" not in text and "delete" not in text and "table inet hypr {" not in text
    back = update(firewall_tables(after), firewall_tables(before))
    assert back is not None and back.startswith("delete element inet hypr published_")
    assert " : " not in back  # a map element is deleted by its key


def test_a_new_network_refills_the_chains_that_changed() -> None:
    before, after = scenario_default_only(), scenario_two_networks()
    text = update(firewall_tables(before), firewall_tables(after))
    assert text is not None
    flushed = re.findall(r"^flush chain inet hypr (\w+)$", text, flags=re.MULTILINE)
    assert flushed == ["prerouting", "output", "postrouting", "forward", "input"]
    assert "delete table" not in text


def test_a_change_of_shape_replaces_the_tables() -> None:
    tables = firewall_tables(scenario_default_only())
    fewer = (replace(tables[0], sets=tables[0].sets[:1]), tables[1])
    assert update(tables, fewer) is None
    assert update(tables, tables[:1]) is None
