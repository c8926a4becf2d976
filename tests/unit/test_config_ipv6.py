"""IPv6 settings from the environment and daemon.json (Docker's `default-address-pools` key). Pure."""

from __future__ import annotations

import json
from ipaddress import IPv6Network
from pathlib import Path

from hypr import ipam
from hypr.config import settings_from_env


def test_pool6_from_the_environment_wins_over_daemon_json(tmp_path: Path) -> None:
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"default-address-pools": [
        {"base": "10.200.0.0/16", "size": 24}, {"base": "fd12:3456:789a::/48", "size": 56},
    ]}))  # fmt: skip
    env = {"HYPR_CONFIG_FILE": str(conf)}
    assert settings_from_env(env).pool6 == "fd12:3456:789a::/48,56"
    assert ipam.DefaultPool6.parse(settings_from_env(env).pool6) == ipam.DefaultPool6(
        IPv6Network("fd12:3456:789a::/48"), 56
    )
    assert settings_from_env({**env, "HYPR_DEFAULT_POOL6": "fd00:1::/48"}).pool6 == "fd00:1::/48"


def test_ipv6_is_off_for_the_default_network_unless_asked(tmp_path: Path) -> None:
    env = {"HYPR_CONFIG_FILE": str(tmp_path / "missing.json")}
    settings = settings_from_env(env)
    assert (settings.default_subnet6, settings.default_gateway6, settings.pool6) == ("", "", "")
    six = settings_from_env({**env, "HYPR_DEFAULT_SUBNET6": "fd00:88::/64", "HYPR_DEFAULT_GATEWAY6": "fd00:88::fe"})
    assert (six.default_subnet6, six.default_gateway6) == ("fd00:88::/64", "fd00:88::fe")


def test_cli_pairs_gateways_and_ranges_with_the_subnet_of_their_family() -> None:
    import click
    import pytest

    from hypr.cli.network import ipam_configs

    assert ipam_configs(("fd00:1::/64", "10.9.0.0/24"), ("10.9.0.254", "fd00:1::fe"), ("fd00:1::100/120",), ()) == [
        {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.254"},
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe", "IPRange": "fd00:1::100/120"},
    ]
    assert ipam_configs((), (), (), ()) == []
    with pytest.raises(click.UsageError, match="one --subnet per address family"):
        ipam_configs(("10.1.0.0/24", "10.2.0.0/24"), (), (), ())
    with pytest.raises(click.UsageError, match="no --subnet of its family"):
        ipam_configs(("10.1.0.0/24",), ("fd00::1",), (), ())
