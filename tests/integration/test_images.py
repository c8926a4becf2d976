"""Images: real pulls from a real registry (CNCF distribution) in the test's namespace, of images built here, run as
sandboxes; the docker CLI and docker-py against our socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration import registry as reg
from tests.integration.harness import Hyprd, run_in, sh, wait_until
from tests.integration.image_fixtures import Registry, images_registry, small_storage

__all__ = ["images_registry", "small_storage"]  # fixtures


def image_ids(hyprd: Hyprd) -> list[str]:
    return hyprd.cli("images", "-q", "--no-trunc").stdout.split()


def rootfs_dirs(hyprd: Hyprd) -> list[str]:
    root = hyprd.root / "data" / "images" / "rootfs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def blobs(hyprd: Hyprd) -> set[str]:
    root = hyprd.root / "data" / "images" / "oci" / "blobs" / "sha256"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def wait_answers(hyprd: Hyprd, url: str, body: str) -> None:
    """`run -d` returns once the workload started, maybe before its server listens: poll (a liveness bound)."""
    curl = ("curl", "-s", "-m", "5", url)
    wait_until(lambda: run_in(hyprd.ns, *curl, rc=None).stdout == body, f"{url} to answer {body!r}", timeout=30)


def assert_nothing_pulled(hyprd: Hyprd) -> None:
    assert image_ids(hyprd) == []
    assert rootfs_dirs(hyprd) == []
    tmp = hyprd.root / "data" / "images" / "tmp"
    assert not tmp.is_dir() or not [p for p in tmp.iterdir() if p.name.startswith("unpack-")]


# -- pull, list, inspect --------------------------------------------------------------------------------------------


def test_pull_lists_inspects_and_a_second_pull_is_up_to_date(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("configured")
    out = hyprd.cli("pull", ref).stdout.splitlines()
    assert out[-1] == ref
    assert any(line.startswith("Status: Downloaded newer image for") for line in out)
    image = json.loads(hyprd.cli("image", "inspect", ref).stdout)[0]
    config = image["Config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["WorkingDir"] == "/srv" and config["User"] == "app" and config["StopSignal"] == "SIGUSR1"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert "GREETING=hello" in config["Env"]
    assert image["RepoTags"] == [ref] and image["RepoDigests"][0].startswith(ref.rsplit(":", 1)[0] + "@sha256:")
    assert image["Architecture"] == "amd64" and image["Os"] == "linux" and image["Id"].startswith("sha256:")
    second = hyprd.cli("pull", ref.rsplit(":", 1)[0]).stdout
    assert "Image is up to date" in second
    assert second.splitlines()[:2] == ["Using default tag: latest", "latest: Pulling from library/configured"]
    assert len(image_ids(hyprd)) == 1 and rootfs_dirs(hyprd) == [image["Id"].removeprefix("sha256:")]
    assert hyprd.cli("pull", "-q", ref).stdout.strip() == ref
    table = hyprd.cli("images").stdout.splitlines()
    assert table[0].split()[:4] == ["REPOSITORY", "TAG", "IMAGE", "ID"]
    assert table[1].split()[:3] == [ref.rsplit(":", 1)[0], "latest", image["Id"][7:19]]
    digests = hyprd.cli("images", "--digests").stdout.splitlines()[1].split()
    assert digests[2] == image["RepoDigests"][0].split("@")[1]


def test_layers_unpack_with_whiteouts_opaque_dirs_hard_links_and_owners(
    hyprd: Hyprd, images_registry: Registry
) -> None:
    ref = images_registry.ref("layered")
    script = (
        "ls /data | tr '\\n' ' '; echo; ls -A /opq | tr '\\n' ' '; echo;"
        " stat -c '%i %h' /data/hl1 /data/hl2; stat -c '%u:%g %a' /data/owned /data/appdir /data/mode0751"
    )
    out = hyprd.cli("run", "--rm", ref, "sh", "-c", script).stdout.splitlines()
    assert out[0].split() == ["appdir", "hl1", "hl2", "keep", "link", "mode0751", "owned"]
    assert out[1].split() == ["new"]
    (ino1, links1), (ino2, _) = out[2].split(), out[3].split()
    assert ino1 == ino2 and links1 == "2"
    assert out[4:7] == ["1000:1000 640", "1000:1000 750", "0:0 751"]


def test_run_pulls_a_missing_image_and_honours_its_config(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("configured")
    run = hyprd.cli("run", "--rm", ref)
    assert run.stdout.strip() == "hello from /srv as 1000:1000"
    assert f"Unable to find image '{ref}' locally" in run.stderr
    # Docker's overrides: -e merges over the image's Env, -w and -u replace, a command replaces Cmd only.
    out = hyprd.cli("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "0:0", ref).stdout.strip()
    assert out == "hi from /tmp as 0:0"
    assert hyprd.cli("run", "--rm", ref, "id -G; echo $HOME").stdout.split() == ["1000", "2000", "/home/app"]
    # --entrypoint drops the image's Cmd.
    assert hyprd.cli("run", "--rm", "--entrypoint", "pwd", ref).stdout.strip() == "/srv"
    assert hyprd.cli("run", "--rm", "-u", "nobody", ref, "id -u").stdout.strip() == "65534"
    bad = hyprd.cli("run", "--rm", "-u", "ghost", ref, rc=None)
    assert bad.returncode != 0 and "unable to find user ghost" in bad.stderr


def test_exec_runs_as_the_image_user_in_its_workdir(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("configured")
    hyprd.cli("run", "-d", "--name", "c1", ref, "trap 'exit 0' USR1; sleep 600 & wait")
    assert hyprd.cli("exec", "c1", "sh", "-c", "echo $(id -u) $(pwd) $GREETING").stdout.split() == [
        "1000", "/srv", "hello",
    ]  # fmt: skip
    container = json.loads(hyprd.cli("inspect", "c1").stdout)[0]
    assert container["Config"]["Image"] == ref and container["Image"] == image_ids(hyprd)[0]
    assert container["Config"]["Entrypoint"] == ["/bin/sh", "-c"]
    assert container["Config"]["Cmd"] == ["trap 'exit 0' USR1; sleep 600 & wait"]
    assert container["Config"]["User"] == "app" and container["Config"]["WorkingDir"] == "/srv"
    assert set(container["Config"]["ExposedPorts"]) == {"8080/tcp", "9090/udp"}
    # Docker's StopSignal: SIGUSR1 reaches the command, PID 1 of its namespace, which traps it: it ends at once (no
    # 10 s wait for SIGKILL; an init without a handler would ignore it, as in Docker).
    started = time.monotonic()
    hyprd.cli("stop", "c1")
    assert time.monotonic() - started < 8  # SIGKILL would come only after the 10 s timeout


def test_publish_all_maps_every_exposed_port_to_a_free_host_port(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("httpd")
    hyprd.cli("run", "-d", "--name", "web", "-P", ref)
    mapping = hyprd.cli("port", "web").stdout.splitlines()
    assert len(mapping) == 1 and mapping[0].startswith("80/tcp -> 0.0.0.0:")
    port = int(mapping[0].rsplit(":", 1)[1])
    assert hyprd.cli("port", "web", "80").stdout.strip() == f"0.0.0.0:{port}"
    wait_answers(hyprd, f"http://127.0.0.1:{port}/", "hello from hypr-httpd\n")
    hyprd.cli("run", "-d", "--name", "cfg", "-P", images_registry.ref("configured"), "sleep 600")
    ports = hyprd.cli("port", "cfg").stdout
    assert "8080/tcp -> 0.0.0.0:" in ports and "9090/udp -> 0.0.0.0:" in ports


def test_p_8080_80_serves_from_the_image(hyprd: Hyprd, images_registry: Registry) -> None:
    hyprd.cli("run", "-d", "--name", "web", "-p", "8080:80", images_registry.ref("httpd"))
    wait_answers(hyprd, "http://127.0.0.1:8080/", "hello from hypr-httpd\n")


def test_registry_mirror_serves_docker_hub_names(hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]) -> None:
    """`hypr run httpd` is docker.io/library/httpd; a configured mirror answers for docker.io (Docker Hub itself
    is out of reach here, so the mirror must be used, and nothing else)."""
    storage, _repos = small_storage
    with reg.registry(hyprd.ns, hyprd.root, storage=storage, readonly=True) as addr:
        hyprd.stop()
        hyprd.env_extra["HYPR_REGISTRY_MIRRORS"] = addr
        hyprd.start()
        hyprd.cli("run", "-d", "--name", "web", "-p", "8080:80", "httpd")
        wait_answers(hyprd, "http://127.0.0.1:8080/", "hello from hypr-httpd\n")
        assert json.loads(hyprd.cli("image", "inspect", "httpd").stdout)[0]["RepoTags"] == ["httpd:latest"]
        assert hyprd.cli("images", "httpd").stdout.splitlines()[1].split()[:2] == ["httpd", "latest"]


def test_a_registry_off_loopback_needs_tls_unless_listed_as_insecure(
    hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]
) -> None:
    """dockerd's rule: plain HTTP only to loopback and to registries listed as insecure (by name or CIDR, in
    HYPR_INSECURE_REGISTRIES / daemon.json), or marked insecure in a registries.conf (skopeo reads it; the
    system's, or CONTAINERS_REGISTRIES_CONF / HYPR_REGISTRIES_CONF)."""
    storage, _repos = small_storage
    run_in(hyprd.ns, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo")  # not a loopback address, though on lo
    with reg.registry(hyprd.ns, hyprd.root, storage=storage, readonly=True, host="192.0.2.1") as addr:
        ref = f"{addr}/library/httpd:latest"
        out = hyprd.cli("pull", ref, rc=1)
        assert "server gave HTTP response to HTTPS client" in out.stderr
        assert_nothing_pulled(hyprd)
        conf = hyprd.root / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{addr}"\ninsecure = true\n')
        for key, value in (("HYPR_INSECURE_REGISTRIES", "192.0.2.0/24"), ("CONTAINERS_REGISTRIES_CONF", str(conf))):
            hyprd.stop()
            hyprd.env_extra.pop("HYPR_INSECURE_REGISTRIES", None)
            hyprd.env_extra[key] = value
            hyprd.start()
            hyprd.cli("pull", ref)
            assert hyprd.cli("run", "--rm", ref, "cat", "/www/index.html").stdout == "hello from hypr-httpd\n"
            hyprd.cli("rmi", ref)


# -- platforms ------------------------------------------------------------------------------------------------------


def test_a_multi_arch_index_resolves_to_this_host_and_platform_is_honoured(
    hyprd: Hyprd, images_registry: Registry
) -> None:
    ref = images_registry.ref("multiarch")
    assert hyprd.cli("run", "--rm", ref).stdout.strip() == "amd64"
    arm = hyprd.cli("pull", "--platform", "linux/arm64", ref)
    assert "Downloaded newer image" in arm.stdout
    archs = {json.loads(hyprd.cli("image", "inspect", i).stdout)[0]["Architecture"] for i in image_ids(hyprd)}
    assert archs == {"amd64", "arm64"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("arm-only", "no matching manifest for linux/amd64 in the manifest list entries"),
        ("arm-only-manifest", "does not match the specified platform: wanted linux/amd64, actual: linux/arm64"),
    ],
)
def test_an_image_for_another_architecture_is_refused(
    hyprd: Hyprd, images_registry: Registry, name: str, message: str
) -> None:
    ref = images_registry.ref(name) if name != "arm-only-manifest" else images_registry.ref(name, "latest")
    out = hyprd.cli("pull", ref, rc=1)
    assert message in out.stderr
    assert_nothing_pulled(hyprd)


def test_an_image_for_another_architecture_is_pulled_on_request_but_never_run(
    hyprd: Hyprd, images_registry: Registry
) -> None:
    """docker pulls `--platform linux/arm64` on amd64 too; hypr emulates no architecture, so running such an image
    (or asking `run` for another platform) is refused by name before anything is created."""
    arm, multi = images_registry.ref("arm-only"), images_registry.ref("multiarch")
    hyprd.cli("pull", "--platform", "linux/arm64", arm)
    assert json.loads(hyprd.cli("image", "inspect", arm).stdout)[0]["Architecture"] == "arm64"
    run = hyprd.cli("run", "--rm", arm, rc=125)
    assert f"image {arm} is for linux/arm64 and this host runs linux/amd64 only" in run.stderr
    run = hyprd.cli("run", "--rm", "--platform", "linux/arm64", multi, rc=125)
    assert "platform linux/arm64 is not supported: this host runs linux/amd64 only" in run.stderr
    assert hyprd.cli("ps", "-aq").stdout == ""
    assert hyprd.cli("run", "--rm", "--platform", "linux/amd64", multi).stdout == "amd64\n"
    out = hyprd.cli("pull", "--platform", "bogus", multi, rc=1)
    assert '"bogus": unknown operating system or architecture' in out.stderr


def test_a_tag_beside_a_digest_pulls_and_runs_by_the_digest(hyprd: Hyprd, images_registry: Registry) -> None:
    """`name:tag@sha256:...`: dockerd asks the registry for the digest only and creates no tag (skopeo refuses a
    reference with both)."""
    ref = images_registry.ref("httpd")
    digest = reg.inspect(hyprd.ns, ref)["Digest"]
    both = f"{ref}@{digest}"
    assert hyprd.cli("pull", both).stdout.strip().endswith(both)
    image = json.loads(hyprd.cli("image", "inspect", both).stdout)[0]
    assert image["RepoTags"] == [] and image["RepoDigests"] == [f"{ref.rsplit(':', 1)[0]}@{digest}"]
    assert hyprd.cli("run", "--rm", both, "cat", "/www/index.html").stdout == "hello from hypr-httpd\n"
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    assert hyprd.cli("rmi", both).stdout.splitlines() == [f"Untagged: {by_digest}", f"Deleted: {image['Id']}"]


def test_images_show_when_they_were_created(hyprd: Hyprd, images_registry: Registry) -> None:
    """The image config's `created` (RFC 3339 without a fraction here, as umoci writes it) is the listing's
    CREATED and the API's Unix `Created`, as docker shows them."""
    ref = images_registry.ref("httpd")
    hyprd.cli("pull", ref)
    with hyprd.client() as client:
        assert [i["Created"] for i in client.images()] == [1_700_000_000]  # reg.CREATED
    row = json.loads(hyprd.cli("images", "--format", "json").stdout)
    assert row["CreatedSince"].endswith(" years ago") and row["CreatedAt"] == "2023-11-14 22:13:20 +0000 UTC"


# -- bad input ------------------------------------------------------------------------------------------------------


def test_unknown_images_tags_and_registries_are_clear_errors(hyprd: Hyprd, images_registry: Registry) -> None:
    addr = images_registry.addr
    cases = [
        (f"{addr}/library/nope", f"manifest for {addr}/library/nope:latest not found: manifest unknown"),
        (f"{addr}/library/httpd:nope", f"manifest for {addr}/library/httpd:nope not found: manifest unknown"),
        ("127.0.0.1:1/x", "connection refused"),
        ("Bad/Name", "invalid reference format"),
        (f"{addr}/library/httpd@sha256:" + "0" * 64, "not found"),
    ]
    for ref, message in cases:
        out = hyprd.cli("pull", ref, rc=1)
        assert message in out.stderr, (ref, out.stderr)
        run = hyprd.cli("run", "--rm", ref, rc=None)
        assert run.returncode != 0 and message in run.stderr
    assert_nothing_pulled(hyprd)
    assert hyprd.cli("ps", "-aq").stdout == ""
    with hyprd.client() as client:
        from hypr.errors import NotFound

        with pytest.raises(NotFound, match="No such image"):
            client.image("nope:latest")


def test_a_registry_answering_garbage_is_a_clear_error(hyprd: Hyprd, tmp_root: Path) -> None:
    script = (
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 5999)); s.listen(8)\nwhile True:\n c,_=s.accept(); c.recv(4096)\n"
        " c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 9\\r\\n\\r\\n{garbage!'); c.close()\n"
    )
    server = subprocess.Popen(["nsenter", f"--net=/run/netns/{hyprd.ns}", "python3", "-c", script])
    try:
        wait_until(lambda: ":5999 " in run_in(hyprd.ns, "ss", "-ltnH").stdout, "garbage server")
        out = hyprd.cli("pull", "127.0.0.1:5999/x", rc=1)
        assert out.stderr.startswith("Error response from daemon:") and len(out.stderr) < 2000
    finally:
        server.kill()
        server.wait()
    assert_nothing_pulled(hyprd)


def test_a_corrupt_layer_is_refused_and_nothing_is_listed(
    hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]], tmp_root: Path
) -> None:
    storage, _ = small_storage
    corrupt = tmp_root / "corrupt"
    sh("cp", "-a", str(storage), str(corrupt))
    layer = reg.build_images(["httpd"])["httpd"].manifest()["layers"][-1]["digest"].removeprefix("sha256:")
    data = next(corrupt.glob(f"docker/registry/v2/blobs/sha256/{layer[:2]}/{layer}/data"))
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    with reg.registry(hyprd.ns, tmp_root, storage=corrupt, readonly=True) as addr:
        out = hyprd.cli("pull", f"{addr}/library/httpd", rc=1)
    assert "digest" in out.stderr.lower()
    assert_nothing_pulled(hyprd)


def test_a_full_disk_fails_the_pull_cleanly(
    host_ns: str, tmp_root: Path, small_storage: tuple[Path, dict[str, str]]
) -> None:
    data = tmp_root / "data"
    data.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(data))
    daemon = Hyprd(ns=host_ns, root=tmp_root)
    try:
        daemon.start()
        storage, _ = small_storage
        with reg.registry(host_ns, tmp_root / "reg", storage=storage, readonly=True) as addr:
            out = daemon.cli("pull", f"{addr}/library/layered", rc=1)
            assert "no space left on device" in out.stderr
            assert_nothing_pulled(daemon)
            sh("mount", "-o", "remount,size=64m", str(data))  # room again: the next pull finishes the job
            daemon.cli("pull", f"{addr}/library/layered")
            assert len(image_ids(daemon)) == 1
    finally:
        daemon.stop()
        sh("umount", "-l", str(data), rc=None)


def test_credentials_from_the_auth_file_or_the_client(hyprd: Hyprd, tmp_root: Path) -> None:
    creds = ("hypr", "s3cret")
    images = reg.build_images(["httpd"])
    with reg.serving(hyprd.ns, tmp_root / "auth", images, htpasswd=creds) as (addr, refs):
        ref = refs["httpd"]
        denied = hyprd.cli("pull", ref, rc=1)
        assert "pull access denied for" in denied.stderr and "docker login" in denied.stderr
        import docker

        api = docker.DockerClient(base_url=f"unix://{hyprd.socket}")
        try:
            image = api.images.pull(
                ref.rsplit(":", 1)[0], tag="latest", auth_config={"username": "hypr", "password": "s3cret"}
            )
            assert image.tags == [ref]
        finally:
            api.close()
        hyprd.cli("rmi", ref)
        auth = tmp_root / "auth.json"
        import base64

        auth.write_text(json.dumps({"auths": {addr: {"auth": base64.b64encode(b"hypr:s3cret").decode()}}}))
        hyprd.stop()
        hyprd.env_extra["REGISTRY_AUTH_FILE"] = str(auth)
        hyprd.start()
        hyprd.cli("pull", ref)


# -- concurrency and crashes ------------------------------------------------------------------------------------------


def test_concurrent_pulls_of_one_image_fetch_each_blob_once(
    hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]
) -> None:
    storage, _ = small_storage
    with reg.registry(hyprd.ns, hyprd.root / "reg", storage=storage, readonly=True) as addr:
        ref = f"{addr}/library/layered"
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _i: hyprd.cli("pull", ref, rc=None), range(4)))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        log = next((hyprd.root / "reg").glob("registry-*/registry.log")).read_text()
    layers = reg.build_images(["layered"])["layered"].manifest()["layers"]
    for layer in layers:
        gets = [line for line in log.splitlines() if f"GET /v2/library/layered/blobs/{layer['digest']}" in line]
        assert len(gets) == 1, (layer["digest"], gets)
    assert len(image_ids(hyprd)) == 1


def test_kill_9_during_a_pull_leaves_no_image_and_the_next_pull_finishes(
    hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]
) -> None:
    storage, _ = small_storage
    # A slow link (the loopback of the test's namespace only): the pull is still running when hyprd dies.
    run_in(
        hyprd.ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "tbf",
        "rate",
        "2mbit",
        "burst",
        "32kbit",
        "latency",
        "400ms",
    )
    with reg.registry(hyprd.ns, hyprd.root / "reg", storage=storage, readonly=True) as addr:
        ref = f"{addr}/library/layered"
        pull = subprocess.Popen([*hyprd_cli(hyprd), "pull", ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: "Copying" in _skopeo_running(addr), "skopeo to start copying", timeout=20)
        time.sleep(0.5)
        hyprd.kill9()
        pull.wait(timeout=10)
        # skopeo dies with hyprd: an orphan would go on writing into the layout the next hyprd cleans and pulls into
        wait_until(lambda: _skopeo_running(addr) == "", "skopeo to die with hyprd", timeout=5)
        hyprd.start()
        assert_nothing_pulled(hyprd)
        run_in(hyprd.ns, "tc", "qdisc", "del", "dev", "lo", "root")
        hyprd.cli("pull", ref)
        assert len(image_ids(hyprd)) == 1
        assert hyprd.cli("run", "--rm", ref, "cat", "/data/keep").stdout == "keep\n"


def test_a_pull_whose_every_client_left_is_cancelled(hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]) -> None:
    """Ctrl-C of `hypr pull` (the last client streaming it) stops skopeo, as dockerd cancels the pull; a second
    client keeps it alive until it leaves too. Nothing is listed; the next pull finishes."""
    storage, _ = small_storage
    run_in(hyprd.ns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "2mbit", "burst", "32kbit",
           "latency", "400ms")  # fmt: skip
    with reg.registry(hyprd.ns, hyprd.root / "reg", storage=storage, readonly=True) as addr:
        ref = f"{addr}/library/layered"
        pulls = [
            subprocess.Popen(
                [*hyprd_cli(hyprd), "pull", ref],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_interruptible,
            )
            for _ in range(2)
        ]
        wait_until(lambda: "Copying" in _skopeo_running(addr), "skopeo to start copying", timeout=20)
        pulls[0].send_signal(signal.SIGINT)
        pulls[0].wait(timeout=10)
        time.sleep(1)
        assert "Copying" in _skopeo_running(addr)  # the other client still waits for it
        pulls[1].send_signal(signal.SIGINT)
        pulls[1].wait(timeout=10)
        wait_until(lambda: _skopeo_running(addr) == "", "skopeo to be killed", timeout=10)
        assert_nothing_pulled(hyprd)
        run_in(hyprd.ns, "tc", "qdisc", "del", "dev", "lo", "root")
        hyprd.cli("pull", ref)
        assert len(image_ids(hyprd)) == 1


def _interruptible() -> None:
    """Ctrl-C as from an interactive shell: a runner started in the background (nohup, `cmd &` without job
    control) ignores SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hyprd_cli(hyprd: Hyprd) -> list[str]:
    from tests.integration.harness import HYPR

    return [HYPR, "-H", f"unix://{hyprd.socket}"]


def _skopeo_running(addr: str = "") -> str:
    """ "Copying" while a skopeo copy (from `addr`, when given: other tests may pull at the same time) runs."""
    out = subprocess.run(["pgrep", "-a", "skopeo"], capture_output=True, text=True).stdout
    return "Copying" if any("copy" in line and addr in line for line in out.splitlines()) else ""


# -- rmi, tag, prune, shared blobs ------------------------------------------------------------------------------------


def test_rmi_follows_dockers_rules(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("httpd")
    hyprd.cli("pull", ref)
    image_id = image_ids(hyprd)[0]
    hyprd.cli("tag", ref, "web:v1")
    assert sorted(json.loads(hyprd.cli("image", "inspect", "web:v1").stdout)[0]["RepoTags"]) == sorted([ref, "web:v1"])
    by_id = hyprd.cli("rmi", image_id[7:19], rc=1)
    assert "image is referenced in multiple repositories" in by_id.stderr
    hyprd.cli("run", "-d", "--name", "w1", "web:v1")
    assert hyprd.cli("rmi", ref).stdout.strip() == f"Untagged: {ref}"  # another tag remains: only untagged
    last = hyprd.cli("rmi", "web:v1", rc=1)
    assert 'unable to remove repository reference "web:v1" (must force)' in last.stderr
    running = hyprd.cli("rmi", "-f", image_id[7:19], rc=1)
    assert "(cannot be forced) - image is being used by running container" in running.stderr
    hyprd.cli("rm", "-f", "w1")
    out = hyprd.cli("rmi", "web:v1").stdout
    assert f"Deleted: {image_id}" in out
    assert_nothing_pulled(hyprd)
    assert blobs(hyprd) == set()
    missing = hyprd.cli("rmi", "web:v1", rc=1)
    assert "No such image: web:v1" in missing.stderr


def test_rmi_of_an_image_a_stopped_workload_uses(hyprd: Hyprd, images_registry: Registry) -> None:
    """Refused without -f (409, Docker's words, by name and by ID); `rmi -f` deletes the image as dockerd does, and
    the stopped workload keeps its root filesystem: it starts again, and the files go when it is removed."""
    ref = images_registry.ref("httpd")
    hyprd.cli("run", "--name", "s1", ref, "cat", "/www/index.html")
    image_id = image_ids(hyprd)[0]
    by_id = hyprd.cli("rmi", image_id[7:19], rc=1)
    assert (
        f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is being used by stopped container"
        in by_id.stderr
    )
    by_name = hyprd.cli("rmi", ref, rc=1)
    assert f'conflict: unable to remove repository reference "{ref}" (must force) - container' in by_name.stderr
    digest = json.loads(hyprd.cli("image", "inspect", ref).stdout)[0]["RepoDigests"][0]
    assert hyprd.cli("rmi", "-f", ref).stdout.splitlines() == [
        f"Untagged: {ref}", f"Untagged: {digest}", f"Deleted: {image_id}"
    ]  # fmt: skip
    assert image_ids(hyprd) == [] and rootfs_dirs(hyprd) == [image_id[7:]]
    hyprd.cli("start", "s1")
    assert hyprd.cli("wait", "s1").stdout == "0\n"  # its output is in before it exits: wait for the exit, not the logs
    assert hyprd.cli("logs", "s1").stdout == "hello from hypr-httpd\n" * 2
    hyprd.cli("rm", "s1")
    assert rootfs_dirs(hyprd) == []


def test_prune_removes_dangling_then_unused_images(hyprd: Hyprd, images_registry: Registry) -> None:
    alpha, beta = images_registry.ref("alpha"), images_registry.ref("beta")
    hyprd.cli("pull", alpha)
    hyprd.cli("pull", beta)
    asked = subprocess.run([*hyprd_cli(hyprd), "image", "prune", "-a"], input="n\n", capture_output=True, text=True,
                           env=hyprd.env, timeout=60)  # fmt: skip
    assert "WARNING! This will remove all images without at least one container" in asked.stdout
    assert len(image_ids(hyprd)) == 2  # the docker CLI's prompt, answered no
    hyprd.cli("tag", alpha, "moving:x")
    hyprd.cli("tag", beta, "moving:x")  # the tag moves; alpha keeps its own name, nothing dangles
    assert hyprd.cli("images", "-f", "dangling=true", "-q").stdout == ""
    hyprd.cli("rmi", alpha)
    assert hyprd.cli("images", "-f", "reference=*/library/*", "-q").stdout.split() == [image_ids(hyprd)[0][7:19]]
    hyprd.cli("run", "-d", "--name", "b1", beta, "sleep", "600")
    assert "Total reclaimed space: 0B" in hyprd.cli("image", "prune", "-f").stdout
    assert "Total reclaimed space" in hyprd.cli("image", "prune", "-a", "-f").stdout
    assert len(image_ids(hyprd)) == 1  # beta is in use
    hyprd.cli("rm", "-f", "b1")
    hyprd.cli("image", "prune", "-a", "-f", "--filter", "until=1")  # only images created before 1970: none
    assert len(image_ids(hyprd)) == 1
    hyprd.cli("image", "prune", "-a", "-f")
    assert_nothing_pulled(hyprd)


def test_two_images_sharing_a_base_layer_store_its_blob_once(hyprd: Hyprd, images_registry: Registry) -> None:
    hyprd.cli("pull", images_registry.ref("alpha"))
    after_alpha = blobs(hyprd)
    second = hyprd.cli("pull", images_registry.ref("beta")).stdout
    base = reg.build_images(["alpha"])["alpha"].manifest()["layers"][0]["digest"].removeprefix("sha256:")
    assert [line for line in second.splitlines() if line.startswith(base[:12])] == [f"{base[:12]}: Already exists"]
    assert base in after_alpha and base in blobs(hyprd)
    assert len(blobs(hyprd) - after_alpha) == 3  # beta's own layer, config and manifest
    assert hyprd.cli("run", "--rm", images_registry.ref("beta")).stdout == "beta\n"


# -- docker CLI and docker-py ------------------------------------------------------------------------------------------


def docker(hyprd: Hyprd, *argv: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    return sh("docker", "-H", f"unix://{hyprd.socket}", *argv, rc=rc, timeout=120)


def test_docker_cli_pull_images_run_rmi(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("httpd")
    out = docker(hyprd, "pull", ref).stdout
    assert "Pull complete" in out and out.strip().endswith(ref)
    listed = docker(hyprd, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
    assert listed[0] == ref
    assert (
        docker(hyprd, "image", "inspect", ref, "--format", "{{.Config.ExposedPorts}}").stdout.strip()
        == "map[80/tcp:{}]"
    )
    docker(hyprd, "run", "-d", "--name", "web", "-p", "8080:80", ref)
    wait_answers(hyprd, "http://127.0.0.1:8080/", "hello from hypr-httpd\n")
    conflict = docker(hyprd, "rmi", ref, rc=1)
    assert "must force" in conflict.stderr
    docker(hyprd, "rm", "-f", "web")
    assert "Deleted:" in docker(hyprd, "rmi", ref).stdout
    missing = docker(hyprd, "image", "inspect", ref, rc=1)
    assert "No such image" in missing.stderr


def test_docker_py_images(hyprd: Hyprd, images_registry: Registry) -> None:
    import docker as docker_py

    api = docker_py.DockerClient(base_url=f"unix://{hyprd.socket}")
    try:
        repo = images_registry.ref("alpha").rsplit(":", 1)[0]
        image = api.images.pull(repo, tag="latest")
        assert image.tags == [f"{repo}:latest"] and image.id.startswith("sha256:")
        assert [i.id for i in api.images.list()] == [image.id]
        assert api.images.get(f"{repo}:latest").attrs["Config"]["Cmd"] == ["cat", "/alpha"]
        assert api.containers.run(f"{repo}:latest", detach=True, name="a1").id
        with pytest.raises(docker_py.errors.APIError):
            api.images.remove(f"{repo}:latest")
        api.containers.get("a1").remove(force=True)
        api.images.remove(f"{repo}:latest")
        with pytest.raises(docker_py.errors.ImageNotFound):
            api.images.get(f"{repo}:latest")
    finally:
        api.close()


def test_pull_policies_for_run(hyprd: Hyprd, images_registry: Registry) -> None:
    ref = images_registry.ref("httpd")
    never = hyprd.cli("run", "--rm", "--pull", "never", ref, "true", rc=125)
    assert f"No such image: {ref}" in never.stderr
    assert image_ids(hyprd) == []
    hyprd.cli("run", "--rm", ref, "true")
    again = hyprd.cli("run", "--rm", "--pull", "always", ref, "true")
    assert "Image is up to date" in again.stderr
    assert (
        hyprd.cli("run", "--rm", "--pull", "never", ref, "cat", "/www/index.html").stdout == "hello from hypr-httpd\n"
    )


def test_compose_pulls_missing_images_by_pull_policy(hyprd: Hyprd, images_registry: Registry, tmp_path: Path) -> None:
    file = tmp_path / "compose.yml"
    file.write_text(
        f"services:\n  web:\n    image: {images_registry.ref('httpd')}\n    pull_policy: never\n"
        f"  cfg:\n    image: {images_registry.ref('configured')}\n    user: '0'\n    working_dir: /tmp\n"
        "    command: ['sleep 600']\n"
    )
    refused = hyprd.cli("compose", "-p", "pp", "-f", str(file), "up", "-d", rc=None)
    assert refused.returncode != 0 and "pull_policy is never" in refused.stderr
    assert hyprd.cli("ps", "-aq").stdout == ""  # nothing made
    hyprd.cli("pull", images_registry.ref("httpd"))
    hyprd.cli("compose", "-p", "pp", "-f", str(file), "up", "-d")
    assert hyprd.cli("exec", "pp-cfg-1", "sh", "-c", "id -u; pwd").stdout.split() == ["0", "/tmp"]
    hyprd.cli("compose", "-p", "pp", "-f", str(file), "down")


def test_the_store_is_root_only(hyprd: Hyprd, images_registry: Registry) -> None:
    hyprd.cli("pull", images_registry.ref("httpd"))
    for path in ("images", "images/rootfs", "images/tmp"):
        assert os.stat(hyprd.root / "data" / path).st_mode & 0o077 == 0, path
