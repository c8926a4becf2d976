"""Schema validation with paths, warnings for ignored keys; the schema file itself is fetched at set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.compose import schema
from hypr.compose.errors import ComposeError

needs_schema = pytest.mark.skipif(not schema.schema_path().exists(), reason="run scripts/fetch-compose-schema.sh")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return schema.load_schema()


@needs_schema
@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("services: {api: {image: x, networks: [a, 5]}}", "services.api.networks[1]: 5 is not of type 'string'"),
        ("services: {api: {image: x, networks: {a: {aliases: 3}}}}", "services.api.networks.a.aliases: 3 is not"),
        ("services: {api: {image: x, ports: ['80:abc']}}", "services.api.ports[0]: '80:abc' is not a valid port"),
        ("services: {api: {image: x, environment: 5}}", "services.api.environment: must be a list or a mapping"),
        ("services: {api: {image: x, bogus: 1}}", "services.api: additional property bogus not allowed"),
        ("services: {}\nnetworks: {n: {ipam: {config: [{subnet: zzz}]}}}", "networks.n.ipam.config[0].subnet: 'zzz'"),
        ("services: {a: {image: x, depends_on: {b: {condition: soon}}}}", "services.a.depends_on.b.condition: 'soon'"),
        ("services: {a: {image: x}}\nvolumez: {}", "(root): additional property volumez not allowed"),
    ],
)
def test_errors_name_the_path(spec: dict[str, Any], document: str, message: str) -> None:
    with pytest.raises(ComposeError) as info:
        schema.validate(yaml.safe_load(document), spec, "f.yml")
    assert info.value.message.startswith("validating f.yml:\n")
    assert message in info.value.message


@needs_schema
def test_hypr_extensions_validate(spec: dict[str, Any]) -> None:
    document = """
name: proj
x-hypr: {runtime: vm}
services:
  a:
    image: busybox
    x-hypr: {runtime: sandbox}
    ports: [80, "127.0.0.1:8080:80/udp", {target: 80, published: "8081", host_ip: 127.0.0.1, protocol: tcp}]
"""
    schema.validate(yaml.safe_load(document), spec)


def test_unsupported_keys_are_named() -> None:
    config = yaml.safe_load("""
volumes: {data: }
services:
  a:
    image: x
    volumes: [data:/data]
    cap_add: [NET_ADMIN]
    x-custom: 1
    networks: {n: {link_local_ips: ["fe80::9"], aliases: [b]}}
    ports: [{target: 80, mode: host}]
    deploy: {replicas: 2, restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}}
networks: {n: {attachable: true}}
""")
    assert schema.unsupported_keys(config) == [
        "(top level): unsupported key ignored: volumes",
        "services.a.networks.n: unsupported key ignored: link_local_ips",
        "services.a.deploy: unsupported key ignored: replicas",
        "services.a.deploy.restart_policy: unsupported key ignored: delay",
    ]


def test_missing_schema_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match=r"schema is missing .* run `make setup` or `scripts/fetch-compose-schema"):
        schema.load_schema(tmp_path / "nope.json")
