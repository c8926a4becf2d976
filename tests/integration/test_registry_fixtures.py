"""The image fixtures themselves: built images, pushed to a real registry, read back and unpacked as built."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration import registry as reg
from tests.integration.harness import netns, run_in, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]

CREDS = ("hypr", "s3cret pass")


@pytest.fixture(scope="module")
def images() -> dict[str, reg.Image]:
    return reg.build_images()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="hyprt-reg-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def served(images: dict[str, reg.Image], workdir: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """One namespace with a registry holding every small image: (ns, address, name -> reference)."""
    with netns("hyprt-reg") as ns, reg.serving(ns, workdir, images) as (addr, refs):
        yield ns, addr, refs


@pytest.fixture
def scratch(workdir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="t-", dir=workdir))


def test_registry_lists_every_pushed_repository(served: tuple[str, str, dict[str, str]]) -> None:
    ns, addr, refs = served
    catalog = json.loads(run_in(ns, "curl", "-sf", f"http://{addr}/v2/_catalog").stdout)
    assert sorted(catalog["repositories"]) == sorted(f"library/{name}" for name in refs)
    assert addr.startswith("127.0.0.1:") and int(addr.split(":")[1]) > 0


def test_busybox_config_and_one_layer(served: tuple[str, str, dict[str, str]], images: dict[str, reg.Image]) -> None:
    ns, _, refs = served
    info = reg.inspect(ns, refs["busybox"])
    assert (info["Architecture"], info["Os"], len(info["Layers"])) == ("amd64", "linux", 1)
    assert info["Env"] == [f"PATH={reg.DEFAULT_PATH}"]
    config = reg.inspect(ns, refs["busybox"], "--config")["config"]
    assert config["Cmd"] == ["sh"]
    assert info["Digest"] == images["busybox"].descriptor()["digest"]  # the registry serves the manifest unchanged


def test_configured_config_fields(served: tuple[str, str, dict[str, str]]) -> None:
    ns, _, refs = served
    config = reg.inspect(ns, refs["configured"], "--config")["config"]
    assert config == {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ['echo "$GREETING from $(pwd) as $(id -u):$(id -g)"'],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
        "WorkingDir": "/srv",
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}, "9090/udp": {}},
        "StopSignal": "SIGUSR1",
        "Labels": {"org.hypr.test": "configured", "org.hypr.test.greeting": "hello"},
    }


def test_httpd_config(served: tuple[str, str, dict[str, str]]) -> None:
    ns, _, refs = served
    config = reg.inspect(ns, refs["httpd"], "--config")["config"]
    assert config["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert "Entrypoint" not in config


def test_multiarch_index_lists_two_platforms(served: tuple[str, str, dict[str, str]]) -> None:
    ns, _, refs = served
    index = reg.inspect(ns, refs["multiarch"], "--raw")
    assert index["mediaType"] == reg.OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    amd64 = reg.inspect(ns, refs["multiarch"])  # skopeo picks this machine's platform
    assert (amd64["Architecture"], len(amd64["Layers"])) == ("amd64", 2)
    arm64 = reg.inspect(ns, refs["multiarch"], "--override-arch=arm64")
    assert (arm64["Architecture"], len(arm64["Layers"])) == ("arm64", 1)


def test_arm_only_has_no_image_for_this_machine(served: tuple[str, str, dict[str, str]]) -> None:
    ns, _, refs = served
    index = reg.inspect(ns, refs["arm-only"], "--raw")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]
    failed = reg.skopeo(ns, "inspect", "--tls-verify=false", f"docker://{refs['arm-only']}", rc=None)
    assert failed.returncode != 0 and "no image found in image index for architecture amd64" in failed.stderr
    plain = reg.inspect(ns, refs["arm-only-manifest"], "--raw")
    assert "config" in plain and "manifests" not in plain
    assert reg.inspect(ns, refs["arm-only-manifest"], "--config")["architecture"] == "arm64"


def test_alpha_and_beta_share_the_base_layer_blob(served: tuple[str, str, dict[str, str]]) -> None:
    ns, _, refs = served
    alpha, beta, busybox = (reg.inspect(ns, refs[n])["Layers"] for n in ("alpha", "beta", "busybox"))
    assert len(alpha) == len(beta) == 2
    assert alpha[0] == beta[0] == busybox[0]
    assert alpha[1] != beta[1]


def test_layered_unpacks_with_whiteouts_opaque_dir_hard_links_and_owners(
    served: tuple[str, str, dict[str, str]], scratch: Path
) -> None:
    ns, _, refs = served
    rootfs = reg.pull_rootfs(ns, refs["layered"], scratch)
    data, opq = rootfs / "data", rootfs / "opq"
    assert sorted(os.listdir(data)) == reg.LAYERED_DATA
    assert sorted(os.listdir(opq)) == reg.LAYERED_OPQ == ["new"]
    assert (data / "keep").read_text() == "keep\n" and (opq / "new").read_text() == "new\n"
    hl1, hl2 = (data / "hl1").stat(), (data / "hl2").stat()
    assert hl1.st_ino == hl2.st_ino and hl1.st_nlink == 2 and (data / "hl2").read_text() == "hard linked\n"
    owned = (data / "owned").stat()
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1000, 1000, 0o640)
    assert stat.S_IMODE((data / "mode0751").stat().st_mode) == 0o751
    appdir = (data / "appdir").stat()
    assert (appdir.st_uid, appdir.st_gid, stat.S_IMODE(appdir.st_mode)) == (1000, 1000, 0o750)
    assert os.readlink(data / "link") == "keep"
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "root").stat().st_mode) == 0o700
    home = (rootfs / "home/app").stat()
    assert (home.st_uid, home.st_gid) == (1000, 1000)
    assert os.readlink(rootfs / "bin/sh") == "busybox"


def test_busybox_users_and_groups_resolve(served: tuple[str, str, dict[str, str]], scratch: Path) -> None:
    ns, _, refs = served
    rootfs = reg.pull_rootfs(ns, refs["busybox"], scratch)
    assert reg.chroot_exec(ns, rootfs, ["id", "app"]).stdout.strip() == (
        "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"
    )
    out = reg.chroot_exec(ns, rootfs, ["sh", "-c", "id -u; whoami; pwd"], user="1000:1000", workdir="/home/app")
    assert out.stdout.split() == ["1000", "app", "/home/app"]
    for applet in ("sh", "ls", "cat", "echo", "id", "sleep", "httpd", "wget", "nc", "env", "pwd", "whoami", "stat"):
        assert (rootfs / "bin" / applet).is_symlink(), applet


def test_configured_prints_its_greeting(served: tuple[str, str, dict[str, str]], scratch: Path) -> None:
    """What a runtime must print for `configured`: Entrypoint + Cmd, Env, WorkingDir and User (resolved here)."""
    ns, _, refs = served
    rootfs = reg.pull_rootfs(ns, refs["configured"], scratch)
    config = reg.inspect(ns, refs["configured"], "--config")["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    out = reg.chroot_exec(ns, rootfs, [*config["Entrypoint"], *config["Cmd"]], env=env, user="1000:1000",
                          workdir=config["WorkingDir"])  # fmt: skip
    assert out.stdout == reg.CONFIGURED_OUTPUT + "\n" == "hello from /srv as 1000:1000\n"


def test_httpd_serves_its_page(served: tuple[str, str, dict[str, str]], scratch: Path) -> None:
    ns, _, refs = served
    rootfs = reg.pull_rootfs(ns, refs["httpd"], scratch)
    cmd = reg.inspect(ns, refs["httpd"], "--config")["config"]["Cmd"]
    with reg.chroot_run(ns, rootfs, cmd, log=scratch / "httpd.log") as proc:
        wait_until(lambda: _listening(ns, 80, proc), "httpd on :80")
        assert run_in(ns, "curl", "-sf", "http://127.0.0.1/").stdout == reg.HTTPD_BODY
    assert not _listening(ns, 80)


def test_multiarch_pulls_the_amd64_image(served: tuple[str, str, dict[str, str]], scratch: Path) -> None:
    ns, _, refs = served
    rootfs = reg.pull_rootfs(ns, refs["multiarch"], scratch)
    assert reg.chroot_exec(ns, rootfs, ["cat", "/arch"]).stdout == "amd64\n"


def test_v2s2_push_converts_to_docker_media_types(images: dict[str, reg.Image], workdir: Path) -> None:
    with netns("hyprt-reg") as ns, reg.registry(ns, workdir) as addr:
        ref = f"{addr}/library/httpd:v2s2"
        httpd = images["httpd"]
        reg.push(ns, httpd.layout, httpd.tag, ref, format="v2s2")
        manifest = reg.inspect(ns, ref, "--raw")
        assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }


def test_htpasswd_registry_needs_credentials(images: dict[str, reg.Image], workdir: Path) -> None:
    with netns("hyprt-reg") as ns, reg.registry(ns, workdir, htpasswd=CREDS) as addr:
        ref = f"{addr}/library/httpd:latest"
        httpd = images["httpd"]
        anonymous = reg.skopeo(ns, "copy", "--dest-tls-verify=false", "--dest-no-creds", f"oci:{httpd.ref}",
                               f"docker://{ref}", rc=None)  # fmt: skip
        assert anonymous.returncode != 0 and "authentication required" in anonymous.stderr
        reg.push(ns, httpd.layout, httpd.tag, ref, creds=CREDS)
        denied = reg.skopeo(ns, "inspect", "--tls-verify=false", "--no-creds", f"docker://{ref}", rc=None)
        assert denied.returncode != 0 and "authentication required" in denied.stderr
        wrong = reg.skopeo(ns, "inspect", "--tls-verify=false", "--creds=hypr:wrong", f"docker://{ref}", rc=None)
        assert wrong.returncode != 0
        assert reg.inspect(ns, ref, creds=CREDS)["Digest"] == httpd.descriptor()["digest"]
        head = run_in(ns, "curl", "-s", "-D", "-", "-o", "/dev/null", f"http://{addr}/v2/").stdout
        assert " 401 " in head.splitlines()[0] and 'Basic realm="hypr-test"' in head


def test_registry_stops_and_serves_shared_storage_read_only(images: dict[str, reg.Image], workdir: Path) -> None:
    storage = Path(tempfile.mkdtemp(prefix="storage-", dir=workdir))
    reg.fill_storage(storage, {"alpha": images["alpha"]}, workdir=workdir)
    with netns("hyprt-reg") as ns:
        with reg.registry(ns, workdir) as addr:
            pass
        assert not _listening(ns, int(addr.split(":")[1]))
        with reg.registry(ns, workdir, storage=storage, readonly=True) as addr:
            assert (
                reg.inspect(ns, f"{addr}/library/alpha:latest")["Layers"][0]
                == (images["busybox"].manifest()["layers"][0]["digest"])
            )
            refused = reg.skopeo(ns, "copy", "--dest-tls-verify=false", f"oci:{images['beta'].ref}",
                                 f"docker://{addr}/library/beta:latest", rc=None)  # fmt: skip
            assert refused.returncode != 0


def test_concurrent_builds_share_one_cached_layout(scratch: Path) -> None:
    """Two processes building into an empty cache: one build, both get the same complete layout, no leftovers."""
    env = {**os.environ, reg.CACHE_ENV: str(scratch / "cache")}
    code = "from tests.integration.registry import httpd; print(httpd().layout)"

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).parents[2])  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: build(), range(2)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert results[0].stdout == results[1].stdout
    assert sum(r.stderr.count("built httpd") for r in results) == 1
    layouts = [p.name for p in (scratch / "cache").iterdir() if not p.name.startswith(".")]
    assert sorted(n.split("-")[0] for n in layouts) == ["busybox", "httpd"]
    assert not list((scratch / "cache").glob(".tmp-*"))


def _listening(ns: str, port: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"exited with {proc.returncode}")
    return f":{port} " in run_in(ns, "ss", "-ltnH").stdout


# --- the real images (slow the first time on a machine: mmdebstrap) ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_nginx_image_serves_the_default_page(workdir: Path) -> None:
    image = reg.nginx()
    scratch = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
    with netns("hyprt-reg") as ns, reg.serving(ns, scratch, {"nginx": image}) as (_, refs):
        config = reg.inspect(ns, refs["nginx"], "--config")["config"]
        assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
        assert config["ExposedPorts"] == {"80/tcp": {}} and config["StopSignal"] == "SIGQUIT"
        rootfs = reg.pull_rootfs(ns, refs["nginx"], scratch)
        assert os.readlink(rootfs / "var/log/nginx/access.log") == "/dev/stdout"
        assert not list((rootfs / "dev").iterdir()) and not (rootfs / "usr/share/doc/nginx-light").exists()
        log = scratch / "nginx.log"
        env = dict(e.split("=", 1) for e in config["Env"])
        with reg.chroot_run(ns, rootfs, config["Cmd"], log=log, env=env) as proc:
            wait_until(lambda: _listening(ns, 80, proc), "nginx on :80", timeout=20)
            assert reg.NGINX_PAGE_MARK in run_in(ns, "curl", "-sf", "http://127.0.0.1/").stdout
            wait_until(lambda: '"GET / HTTP/1.1" 200' in log.read_text(), "nginx's access log on stdout")
    print(f"nginx: built in {reg.build_seconds(image)} s; layout {image.layout}")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_postgres_image_initialises_and_answers_psql(workdir: Path) -> None:
    image = reg.postgres()
    scratch = Path(tempfile.mkdtemp(prefix="postgres-", dir=workdir))
    with netns("hyprt-reg") as ns, reg.serving(ns, scratch, {"postgres": image}) as (_, refs):
        config = reg.inspect(ns, refs["postgres"], "--config")["config"]
        assert config["Entrypoint"] == ["/usr/local/bin/hypr-postgres-entrypoint"] and config["Cmd"] == ["postgres"]
        assert config["User"] == "root" and config["ExposedPorts"] == {"5432/tcp": {}}
        assert config["Env"] == reg.POSTGRES_ENV
        rootfs = reg.pull_rootfs(ns, refs["postgres"], scratch)
        env = dict(e.split("=", 1) for e in config["Env"])
        query = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "select msg from greetings"]

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"postgres exited {proc.returncode}:\n{log.read_text()}")
            out = reg.chroot_exec(ns, rootfs, [*config["Entrypoint"], *query], env=env, rc=None)
            return out.returncode == 0 and out.stdout == reg.POSTGRES_GREETING + "\n"

        log = scratch / "postgres.log"
        for start in ("first", "second"):  # the second start finds the cluster and does not initialise it again
            with reg.chroot_run(ns, rootfs, [*config["Entrypoint"], *config["Cmd"]], log=log, env=env) as proc:
                wait_until(answers, f"postgres ({start} start) to answer psql (log: {log})", timeout=60)
        assert log.read_text().count("hypr-postgres-entrypoint: initialised") == 1
        hba = (rootfs / "var/lib/postgresql/data/pg_hba.conf").read_text()
        assert "host all all 0.0.0.0/0 trust" in hba
    print(f"postgres: built in {reg.build_seconds(image)} s; layout {image.layout}")
