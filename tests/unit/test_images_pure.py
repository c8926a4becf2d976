"""Pure image logic: Docker's reference normalisation, platform choice, config inheritance, --user resolution,
registry settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypr.config import registry_config
from hypr.errors import InvalidParameter, NotFound
from hypr.images import manifest as mf
from hypr.images.reference import parse
from hypr.images.registry import Credentials, RegistryConfig, pull_error
from hypr.runtime.users import resolve_user
from hypr.services.workload_plan import _command

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "familiar", "loopback"),
    [
        ("nginx", "docker.io/library/nginx:latest", "nginx", False),
        ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx", False),
        ("user/app", "docker.io/user/app:latest", "user/app", False),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx", False),
        ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx", False),
        ("localhost/x", "localhost/x:latest", "localhost/x", True),
        ("localhost:5000/x/y:t", "localhost:5000/x/y:t", "localhost:5000/x/y", True),
        ("127.0.0.1:5000/library/nginx", "127.0.0.1:5000/library/nginx:latest", "127.0.0.1:5000/library/nginx", True),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x", True),
        ("ghcr.io/o/r:v1.2.3", "ghcr.io/o/r:v1.2.3", "ghcr.io/o/r", False),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}", "nginx", False),
        (f"nginx:1@{DIGEST}", f"docker.io/library/nginx:1@{DIGEST}", "nginx", False),
        ("a/b_c__d-e.f", "docker.io/a/b_c__d-e.f:latest", "a/b_c__d-e.f", False),
    ],
)
def test_references_normalise_as_docker_does(text: str, full: str, familiar: str, loopback: bool) -> None:
    ref = parse(text)
    assert str(ref) == full and ref.familiar_name == familiar and ref.is_loopback == loopback


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Nginx",
        "nginx:",
        ":tag",
        "a b",
        "-x",
        "x-",
        "nginx@sha256:12",
        "a//b",
        "host:port/x",
        "UP/x/y",
        "x:" + "t" * 129,
    ],
)
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid reference format"):
        parse(text)


INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "windows", "architecture": "amd64"}},
    ],
}


@pytest.mark.parametrize(
    ("platform", "digit"),
    [
        ("linux/amd64", "3"),
        ("linux/arm64", "2"),
        ("linux/arm64/v8", "2"),
        ("linux/arm/v7", "1"),
        ("windows/amd64", "4"),
    ],
)
def test_an_index_resolves_to_the_wanted_platform(platform: str, digit: str) -> None:
    assert mf.is_index(INDEX)
    assert mf.choose(INDEX, mf.parse_platform(platform), "x") == "sha256:" + digit * 64


def test_no_manifest_for_the_platform_is_dockers_not_found() -> None:
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x in the manifest list entries"):
        mf.choose(INDEX, mf.parse_platform("linux/s390x"), "x")
    with pytest.raises(InvalidParameter, match="does not match the specified platform"):
        mf.check_platform({"os": "linux", "architecture": "arm64"}, mf.parse_platform("linux/amd64"), "x")
    mf.check_platform({"os": "linux", "architecture": "amd64"}, mf.parse_platform(None), "x")


RUN = mf.RunConfig(entrypoint=("/entry",), cmd=("serve", "-v"))


@pytest.mark.parametrize(
    ("body", "entrypoint", "argv"),
    [
        ({}, ("/entry",), ("/entry", "serve", "-v")),
        ({"Cmd": ["other"]}, ("/entry",), ("/entry", "other")),
        ({"Entrypoint": ["sh", "-c"]}, ("sh", "-c"), ("sh", "-c")),  # a new entrypoint drops the image's Cmd
        ({"Entrypoint": ["sh", "-c"], "Cmd": ["echo"]}, ("sh", "-c"), ("sh", "-c", "echo")),
        ({"Entrypoint": [""], "Cmd": ["ls"]}, (), ("ls",)),  # --entrypoint "" resets it
        ({"Entrypoint": "sh"}, ("sh",), ("sh",)),
    ],
)
def test_entrypoint_and_cmd_combine_as_in_docker(
    body: dict[str, object], entrypoint: tuple[str, ...], argv: tuple[str, ...]
) -> None:
    assert _command(body, RUN) == (entrypoint, argv)


def test_run_config_reads_the_image_config() -> None:
    run = mf.run_config(
        {"config": {"Env": ["A=1"], "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "User": "app", "WorkingDir": "/w",
                    "StopSignal": "SIGQUIT", "Labels": {"k": "v"}}}
    )  # fmt: skip
    assert run.exposed_ports == ("53/udp", "80/tcp") and run.user == "app" and run.labels == (("k", "v"),)
    assert mf.run_config({}) == mf.RunConfig()


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app,web\nwww:x:33:\n")
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, (), "/root")),
        ("app", (1000, 1000, (2000,), "/home/app")),
        ("1000", (1000, 1000, (2000,), "/home/app")),
        ("app:www", (1000, 33, (2000,), "/home/app")),
        ("web:2000", (33, 2000, (), "/var/www")),
        ("4242", (4242, 0, (), "/")),
        ("4242:4242", (4242, 4242, (), "/")),
    ],
)
def test_users_resolve_against_the_image(etc: Path, user: str, expected: tuple[object, ...]) -> None:
    creds = resolve_user(etc, user)
    assert (creds.uid, creds.gid, creds.groups, creds.home) == expected


@pytest.mark.parametrize(
    ("user", "message"), [("ghost", "unable to find user ghost"), ("app:nogroup", "unable to find group nogroup")]
)
def test_unknown_users_and_groups_are_refused(etc: Path, user: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        resolve_user(etc, user)


def test_registry_settings_from_daemon_json_and_the_environment(tmp_path: Path) -> None:
    conf = tmp_path / "daemon.json"
    conf.write_text('{"insecure-registries": ["reg.lan:5000"], "registry-mirrors": ["https://mirror.lan"]}')
    cfg = registry_config(
        {
            "HYPR_CONFIG_FILE": str(conf),
            "HYPR_INSECURE_REGISTRIES": "other.lan",
            "HYPR_REGISTRY_MIRRORS": "127.0.0.1:5000",
        }
    )
    assert cfg.insecure == ("reg.lan:5000", "other.lan")
    assert [str(r) for r in cfg.sources(parse("nginx"))] == [
        "mirror.lan/library/nginx:latest", "127.0.0.1:5000/library/nginx:latest", "docker.io/library/nginx:latest",
    ]  # fmt: skip
    assert [str(r) for r in cfg.sources(parse("ghcr.io/a/b"))] == ["ghcr.io/a/b:latest"]
    assert not cfg.tls_verify(parse("reg.lan:5000/x")) and not cfg.tls_verify(parse("other.lan/x"))
    assert not cfg.tls_verify(parse("localhost:5000/x")) and cfg.tls_verify(parse("ghcr.io/x"))
    assert RegistryConfig().tls_verify(parse("nginx"))


def test_skopeo_failures_become_dockers_errors() -> None:
    ref = parse("nope")
    denied = pull_error(
        'time="x" level=fatal msg="Error parsing image name \\"docker://x\\": requested access to the resource is denied"',
        ref,
    )
    assert isinstance(denied, NotFound) and denied.message.startswith(
        "pull access denied for nope, repository does not exist"
    )
    unknown = pull_error("reading manifest latest in x: manifest unknown: manifest unknown", ref)
    assert unknown.message == "manifest for nope:latest not found: manifest unknown: manifest unknown"


def test_registry_auth_header_is_base64url_json() -> None:
    import base64
    import json

    header = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")
    assert Credentials.from_header(header) == Credentials("u", "p")
    assert Credentials.from_header(base64.urlsafe_b64encode(b"{}").decode()) is None
    with pytest.raises(InvalidParameter):
        Credentials.from_header("%%%")


def test_an_images_creation_time_reads_nanoseconds_and_falls_back_to_the_pull() -> None:
    from datetime import UTC, datetime

    from hypr.models import Image
    from hypr.services.images import created_at

    def image(created: str) -> Image:
        return Image(id="sha256:" + "0" * 64, config={}, size=0, created=created, pulled="2026-01-02T03:04:05.000001Z")

    assert created_at(image("2025-05-06T07:08:09.123456789Z")) == datetime(2025, 5, 6, 7, 8, 9, 123456, UTC)
    assert created_at(image("2025-05-06T07:08:09Z")) == datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert created_at(image("")) == datetime(2026, 1, 2, 3, 4, 5, 1, UTC)


def test_a_one_word_platform_is_an_os_or_an_architecture_as_containerd_parses_it() -> None:
    host = mf.host_platform()
    assert mf.parse_platform("linux") == mf.Platform("linux", host.architecture)
    assert mf.parse_platform("arm64") == mf.Platform(host.os, "arm64")
    assert mf.parse_platform("x86_64") == mf.Platform(host.os, "amd64")
    for bad in ("bogus", "linux//amd64", "a/b/c/d", "/"):
        with pytest.raises(InvalidParameter, match="unknown operating system or architecture"):
            mf.parse_platform(bad)
