import asyncio
import hashlib
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypr.dns import DnsServer, lookup
from hypr.dns.records import Found, Outcome
from hypr.dns.testing import LoopThread
from hypr.models import Endpoint, Network, Snapshot, Workload
from hypr.reconcile.dns import DnsStep, Upstreams

GATEWAY = IPv4Address("10.88.0.1")


def test_follows_an_edited_resolv_conf_and_skips_our_gateways(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.88.0.1\nnameserver 192.0.2.53\n")
    upstreams = Upstreams((), conf)
    assert upstreams.changed({GATEWAY}) == [("192.0.2.53", 53)]
    assert upstreams.changed({GATEWAY}) is None  # nothing new: nothing handed out
    conf.write_text("nameserver 198.51.100.53\n")
    os.utime(conf, (1, 1))
    assert upstreams.changed({GATEWAY}) == [("198.51.100.53", 53)]


def test_fixed_upstreams_are_handed_out_once(tmp_path: Path) -> None:
    upstreams = Upstreams((("203.0.113.53", 5353),), tmp_path / "missing")
    assert upstreams.changed({GATEWAY}) == [("203.0.113.53", 5353)]
    assert upstreams.changed(set()) is None


def test_the_search_list_is_followed_with_fixed_upstreams_too(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\nsearch Corp.Test. example.test\n")
    upstreams = Upstreams((("203.0.113.53", 53),), conf)  # HYPR_DNS_UPSTREAMS: the file still gives the search list
    assert upstreams.refresh({GATEWAY}) == (True, True)
    assert upstreams.search == ("corp.test", "example.test") and upstreams.upstreams == [("203.0.113.53", 53)]
    assert upstreams.refresh({GATEWAY}) == (False, False)
    conf.write_text("nameserver 192.0.2.53\ndomain other.test\n")  # the last search/domain line counts, as in glibc
    assert upstreams.refresh({GATEWAY}) == (False, True)
    assert upstreams.search == ("other.test",)
    conf.unlink()
    assert upstreams.refresh({GATEWAY}) == (False, True) and upstreams.search == ()


def test_records_are_rebuilt_when_the_hosts_search_list_changes(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\nsearch corp.test\n")
    network = Network("a" * 64, "app", "vbr1", IPv4Network("10.89.1.0/24"), IPv4Address("10.89.1.1"))
    workloads = [Workload(hashlib.sha256(n.encode()).hexdigest(), n, "img", state="running") for n in ("web", "cli")]
    snapshot = Snapshot(
        networks=(network,),
        workloads=tuple(workloads),
        endpoints=tuple(
            Endpoint(w.id, w.id, network.id, IPv4Address(f"10.89.1.{2 + i}"), "02:42:00:00:00:00", "hv", 0)
            for i, w in enumerate(workloads)
        ),
    )
    with LoopThread() as loop:
        server = DnsServer()
        step = DnsStep(server, loop.loop, Upstreams((), conf))
        try:
            loop.run(step.follow_upstreams())
            step(snapshot)  # the reconcile, as on the worker thread
            web = Found(addresses=(IPv4Address("10.89.1.2"),))
            assert lookup(server.records, "10.89.1.3", None, "web.corp.test", "A") == web
            conf.write_text("nameserver 192.0.2.53\nsearch new.test\n")
            os.utime(conf, (2, 2))
            loop.run(step.follow_upstreams())  # the daemon's refresher, between changes
            assert lookup(server.records, "10.89.1.3", None, "web.new.test", "A") == web
            assert lookup(server.records, "10.89.1.3", None, "web.corp.test", "A") is Outcome.FORWARD
            assert server.records.host_search == ("new.test",)
        finally:
            loop.run(server.close())
            loop.run(asyncio.sleep(0))
        assert loop.errors == []
