import os
from ipaddress import IPv4Address
from pathlib import Path

from hypr.reconcile.dns import Upstreams

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
