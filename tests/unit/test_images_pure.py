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
    assert cfg.registries_conf == ""
    assert registry_config({"CONTAINERS_REGISTRIES_CONF": "/a", "HYPR_CONFIG_FILE": str(conf)}).registries_conf == "/a"


@pytest.mark.parametrize(
    ("name", "verify"),
    [
        ("10.1.2.3:5000/x", False),  # in 10.0.0.0/8
        ("[2001:db8::7]:5000/x", False),  # in 2001:db8::/32
        ("192.0.2.1/x", True),
        ("plain.lan/library/nginx", False),  # an http:// mirror
        ("tls.lan/library/nginx", True),  # an https:// mirror
        ("reg.lan:5001/x", True),  # another port than the one listed
    ],
)
def test_insecure_registries_by_name_cidr_or_plain_mirror(name: str, verify: bool) -> None:
    cfg = RegistryConfig(
        insecure=("10.0.0.0/8", "2001:db8::/32", "reg.lan:5000", "bad/cidr"),
        mirrors=("http://plain.lan", "https://tls.lan"),
    )
    assert cfg.tls_verify(parse(name)) == verify


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


@pytest.mark.parametrize(
    "name",
    ["127.0.0.1:44015/library/nope", "127.0.0.1:4010/x", "reg.lan/denied/app", "reg.lan/app:unauthorized"],
)
def test_names_that_hold_error_words_do_not_change_the_error(name: str) -> None:
    """The registry's port, repository and tag are not skopeo's words (a port of 44015 once read as HTTP 401)."""
    ref = parse(name)
    unknown = pull_error(f"reading manifest {ref.tag} in {ref.name}: manifest unknown: manifest unknown", ref)
    assert unknown.message == f"manifest for {ref.tagged} not found: manifest unknown: manifest unknown"
    denied = pull_error(f"reading manifest {ref.tag} in {ref.name}: invalid status code from registry 401", ref)
    assert denied.message.startswith(f"pull access denied for {ref.familiar_name},")


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


@pytest.mark.parametrize(
    ("created", "unix"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000),  # no fraction (umoci's, many registries')
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000),
        ("", 0),
        ("yesterday", 0),
    ],
)
def test_lists_and_history_show_the_images_creation_as_unix_seconds(created: str, unix: int) -> None:
    """`docker images` shows CREATED from it ("N/A" or "56 years ago" when it is 0)."""
    from hypr.api.images import image_history, image_summary
    from hypr.models import Image, Snapshot

    history = [{"created": created, "created_by": "umoci"}]
    image = Image(id="sha256:" + "0" * 64, config={"history": history}, size=1, created=created, pulled="")
    assert image_summary(Snapshot(), image)["Created"] == unix
    assert image_history(image)[0]["Created"] == unix


@pytest.mark.parametrize(
    ("text", "remote"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (f"nginx:1.25@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),  # skopeo refuses a tag beside a digest
        (f"127.0.0.1:5000/a/b:t@{DIGEST}", f"127.0.0.1:5000/a/b@{DIGEST}"),
    ],
)
def test_a_digest_is_what_the_registry_is_asked_for(text: str, remote: str) -> None:
    assert parse(text).remote == remote


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("linux", "linux/amd64"),
        ("arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("Linux/AMD64", "linux/amd64"),
    ],
)
def test_platforms_parse_as_containerd_does(text: str, parsed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mf, "host_platform", lambda: mf.Platform("linux", "amd64"))
    assert str(mf.parse_platform(text)) == parsed


@pytest.mark.parametrize("text", ["bogus", "bogus/amd64", "linux//v8", "a/b/c/d"])
def test_unknown_platforms_are_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="unknown operating system or architecture"):
        mf.parse_platform(text)


def test_only_images_and_platforms_of_this_host_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mf, "host_platform", lambda: mf.Platform("linux", "amd64"))
    mf.check_runnable({"os": "linux", "architecture": "amd64"}, "x")
    mf.check_runnable({}, "x")  # a config that names no platform (old or hand-made images) may run
    mf.check_host_platform("linux/amd64")
    with pytest.raises(InvalidParameter, match="image x is for linux/arm64/v8 and this host runs linux/amd64 only"):
        mf.check_runnable({"os": "linux", "architecture": "arm64", "variant": "v8"}, "x")
    with pytest.raises(InvalidParameter, match="platform linux/arm64 is not supported"):
        mf.check_host_platform("linux/arm64")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (30 * 3600, "30 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (100 * 86400, "3 months"),
        (1111 * 86400, "3 years"),
    ],
)
def test_durations_read_as_dockers(seconds: float, text: str) -> None:
    """`docker images` CREATED and `docker ps` STATUS (go-units' HumanDuration)."""
    from datetime import timedelta

    from hypr.api.shapes import human_duration

    assert human_duration(timedelta(seconds=seconds)) == text


def test_image_rows_are_the_docker_clis() -> None:
    """A pull by digest lists its repository with TAG <none>; a tag and a digest of one repository share a row."""
    from hypr.cli.images import _rows

    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    image = {"Id": "sha256:" + "f" * 64, "Created": 0, "Size": 1, "RepoTags": ["a:1", "a:2", "b:latest"],
             "RepoDigests": [f"a@{d1}", f"c@{d2}"]}  # fmt: skip
    plain = [(r["Repository"], r["Tag"], r["Digest"]) for r in _rows([image], digests=False, no_trunc=False)]
    assert plain == [("a", "1", "<none>"), ("a", "2", "<none>"), ("b", "latest", "<none>"), ("c", "<none>", "<none>")]
    shown = [(r["Repository"], r["Tag"], r["Digest"]) for r in _rows([image], digests=True, no_trunc=False)]
    assert shown == [("a", "1", d1), ("a", "2", d1), ("b", "latest", "<none>"), ("c", "<none>", d2)]
    nameless = {**image, "RepoTags": [], "RepoDigests": []}
    assert [(r["Repository"], r["Tag"]) for r in _rows([nameless], digests=True, no_trunc=False)] == [
        ("<none>", "<none>")
    ]


def test_listing_filters_as_dockerd() -> None:
    """`reference` keeps only the matching names of an image; `before`/`since` are strict (equal times: neither)."""
    from hypr.models import Image, Snapshot
    from hypr.services.images import list_images

    def image(n: int, created: str, *names: str) -> Image:
        return Image(
            id=f"sha256:{n}" + "0" * 63, config={}, size=0, created=created, pulled="",
            repo_tags=tuple(x for x in names if "@" not in x), repo_digests=tuple(x for x in names if "@" in x),
        )  # fmt: skip

    old = image(
        1, "2020-01-01T00:00:00Z", "docker.io/library/a:latest", "docker.io/library/b:v1", "docker.io/library/b:v2"
    )
    twin = image(2, "2020-01-01T00:00:00Z", "docker.io/library/c:latest")
    new = image(3, "2021-01-01T00:00:00Z", f"docker.io/library/d@sha256:{'d' * 64}")
    snap = Snapshot(images=(old, twin, new))

    def listed(**filters: list[str]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        return [(i.id[7], i.repo_tags, i.repo_digests) for i in list_images(snap, filters)]

    assert listed(reference=["b:v*"]) == [("1", ("docker.io/library/b:v1", "docker.io/library/b:v2"), ())]
    assert listed(reference=["a"]) == [("1", ("docker.io/library/a:latest",), ())]
    assert listed(reference=["d"]) == [("3", (), (f"docker.io/library/d@sha256:{'d' * 64}",))]
    assert [i for i, _, _ in listed(before=["c"])] == []
    assert [i for i, _, _ in listed(since=["c"])] == ["3"]
    assert [i for i, _, _ in listed(before=["d@sha256:" + "d" * 64])] == ["1", "2"]
