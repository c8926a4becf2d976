"""Real OCI images, built here, served by a real registry (CNCF distribution) inside a test's network namespace.

Docker Hub is unreachable from our machines, so every test that pulls an image pulls it from a registry that it
starts itself (`registry()`), filled with images built by the functions below (`push()`, `push_index()`,
`push_image()`). The puller under test must use the same code path as for Docker Hub.

Images are OCI layouts built with umoci from layer tars that this module writes byte for byte (so whiteouts, opaque
directories, hard links, owners and modes are exactly what a test expects), cached under `cache_dir()`
(`/var/cache/hypr-test-images`, or `$HYPR_TEST_IMAGE_CACHE`) in a directory named after a hash of the builder's
inputs. A build runs under a per-image lock in a temporary directory that is renamed into place when complete, so
concurrent pytest workers never see half a build and build each image once. Every image has one tag, `latest`
(the multi-architecture ones also tag each platform's manifest: `amd64`, `arm64`).

Use in tests (a session builds each image once; each test gets its own registry in its own namespace):

    @pytest.fixture(scope="session")
    def registry_storage(tmp_path_factory) -> Path:        # every small image, pushed once
        storage = tmp_path_factory.mktemp("registry")
        fill_storage(storage / "storage", build_images(), workdir=storage)
        return storage / "storage"

    with registry(hyprd.ns, tmp_root, storage=registry_storage, readonly=True) as addr:
        hyprd.cli("pull", f"{addr}/library/httpd:latest")

or, for a few images, `with serving(ns, root, build_images(["httpd", "layered"])) as (addr, refs): ...`.
Slow images (nginx, postgres: mmdebstrap, ~30 s and ~50 s the first time on a machine) are in SLOW_IMAGES.

What each image holds (the exact values tests may assert):

busybox (`busybox_base()`), one layer, config Cmd ["sh"], Env ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:
    /usr/bin:/sbin:/bin"] (one string, as Docker's busybox), linux/amd64.
    /bin/busybox (Debian's busybox-static) and /bin/<applet> -> busybox for every applet of `busybox --list`
    (sh, ls, cat, echo, id, sleep, httpd, wget, nc, env, pwd, whoami, stat, test, ip, nslookup, ...).
    /etc/passwd: root 0:0 (/root, /bin/sh), nobody 65534:65534, app 1000:1000 (/home/app, /bin/sh).
    /etc/group: root 0, nogroup 65534, app 1000, extra 2000 with member app
    (so user `app` has uid=1000 gid=1000 groups=1000,2000; `id app` prints
    "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)").
    Directories: /tmp 1777, /root 0700, /home/app 0755 owned 1000:1000, empty /dev /proc /sys /run /var /usr/bin
    /usr/sbin /sbin.
layered (`layered()`): busybox's layer, then
    layer 2: /data (0755) with keep ("keep\\n"), gone ("gone\\n"), hl1 + hl2 (one file "hard linked\\n" and a tar
    hard link to it), owned ("owned by app\\n", 0640, 1000:1000), mode0751 (0751), link -> keep (symlink),
    appdir/ (0750, 1000:1000), dirgone/file; /opq with old1, old2, sub/old3;
    layer 3: /data/.wh.gone, /data/.wh.dirgone, /opq/.wh..wh..opq and /opq/new ("new\\n").
    After unpacking: /data holds exactly appdir, hl1, hl2, keep, link, mode0751, owned; hl1 and hl2 are one inode
    (link count 2); /opq holds exactly `new`; owners and modes as listed.
configured (`configured()`): busybox + a layer with /srv (0755, owned 1000:1000), and config
    Entrypoint ["/bin/sh", "-c"], Cmd ['echo "$GREETING from $(pwd) as $(id -u):$(id -g)"'],
    Env ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"], WorkingDir "/srv", User "app",
    ExposedPorts {"8080/tcp": {}, "9090/udp": {}}, StopSignal "SIGUSR1",
    Labels {"org.hypr.test": "configured", "org.hypr.test.greeting": "hello"}.
    Run with no arguments it prints "hello from /srv as 1000:1000" (and `id -G` as app prints "1000 2000").
httpd (`httpd()`): busybox + /www/index.html ("hello from hypr-httpd\\n"), Cmd ["httpd", "-f", "-p", "80", "-h",
    "/www"], ExposedPorts {"80/tcp": {}}. `GET /` answers "hello from hypr-httpd\\n".
multiarch (`multiarch()`): tag `latest` is an OCI image index with two manifests: linux/amd64 (busybox + /arch
    "amd64\\n", Cmd ["cat", "/arch"]: running it prints "amd64") and linux/arm64 variant v8 (one layer holding only
    /arch "arm64\\n", Cmd ["cat", "/arch"]; it never runs here). Tags `amd64` and `arm64` name the two manifests.
arm-only (`arm_only()`): tag `latest` is an index whose only manifest is linux/arm64 (v8) (the same arm64 image as
    in multiarch); `arm_only_manifest()` is that image's plain manifest (tag `arm64`, config Architecture "arm64"),
    for a registry that serves no index. Both must fail on amd64 as "image for another architecture".
alpha, beta (`shared_base_pair()`): busybox's layer (the same blob: one digest) plus one layer each, /alpha
    ("alpha\\n") or /beta ("beta\\n"); Cmd ["cat", "/alpha"] or ["cat", "/beta"].
nginx (`nginx()`): Debian bookworm's nginx-light (`mmdebstrap --variant=apt`), one layer, Cmd ["nginx", "-g",
    "daemon off;"], Env [PATH as busybox], ExposedPorts {"80/tcp": {}}, StopSignal "SIGQUIT". `GET /` on port 80
    answers Debian's default page (contains "Welcome to nginx!"); /var/log/nginx/access.log -> /dev/stdout and
    error.log -> /dev/stderr (as the official image), so requests are logged on stdout.
postgres (`postgres()`): Debian bookworm's PostgreSQL 15 server and client, one layer, Entrypoint
    ["/usr/local/bin/hypr-postgres-entrypoint"], Cmd ["postgres"], User "root", ExposedPorts {"5432/tcp": {}},
    StopSignal "SIGINT", Env ["PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:
    /sbin:/bin", "PGDATA=/var/lib/postgresql/data"]. On a first start the entrypoint initdb's $PGDATA (trust auth,
    also `host all all 0.0.0.0/0 trust`), creates table greetings(msg text) with the one row 'hello from db', then
    execs postgres (as user postgres, via setpriv) listening on *:5432. Any other command (e.g. `psql -h db -U
    postgres -tAc 'select msg from greetings'`, which prints "hello from db") is exec'd as given.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from inspect import getsource
from pathlib import Path
from typing import Any

from tests.integration.harness import netns, run_in, sh, stop_process, wait_until

CACHE_ENV = "HYPR_TEST_IMAGE_CACHE"
DEFAULT_CACHE = Path("/var/cache/hypr-test-images")
RECIPE_VERSION = "1"  # part of every cache key: bump it to rebuild every image
BUSYBOX = Path("/bin/busybox")
CREATED = "2023-11-14T22:13:20Z"  # a fixed creation time, so that small images are reproducible
MTIME = 1_700_000_000  # the same instant, for tar entries
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
REGISTRY_TIMEOUT = 15.0
SKOPEO_TIMEOUT = 300.0


# --- registry -------------------------------------------------------------------------------------------------------


@contextmanager
def registry(
    ns: str,
    root: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    storage: Path | None = None,
    readonly: bool = False,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """A `docker-registry` listening on `host`:<free port> inside `ns` (plain HTTP); yields "HOST:PORT".

    Its config, log (`registry.log`) and storage live in a new directory under `root`. `htpasswd=(user, password)`
    turns on basic auth (realm "hypr-test"). `storage` serves an existing storage directory instead (one filled
    once per session, say, and then served read-only in each test's namespace: `readonly=True` refuses pushes).
    """
    root.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="registry-", dir=root))
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage or home / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": readonly}},
        },
        "http": {"addr": f"{host}:0", "secret": "hypr-test-secret"},  # port 0: the kernel picks a free one
    }
    if htpasswd is not None:
        user, password = htpasswd
        (home / "htpasswd").write_text(sh("htpasswd", "-Bbn", user, password).stdout.strip() + "\n")
        config["auth"] = {"htpasswd": {"realm": "hypr-test", "path": str(home / "htpasswd")}}
    (home / "config.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    log = home / "registry.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", "docker-registry", "serve", str(home / "config.yml")],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        addr = _wait_for_registry(ns, proc, log)
        yield addr
    finally:
        stop_process(proc)


def _wait_for_registry(ns: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    """Finds the port the registry listens on (nsenter execs it, so its pid is proc.pid), then polls GET /v2/."""
    found: list[str] = []

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited with {proc.returncode}:\n{log.read_text()}")
        if not found:
            for line in run_in(ns, "ss", "-ltnpH").stdout.splitlines():
                if f"pid={proc.pid}," in line:
                    found.append(line.split()[3])
            if not found:
                return False
        status = run_in(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2",
                        f"http://{found[0]}/v2/", rc=None).stdout  # fmt: skip
        return status in ("200", "401")

    wait_until(ready, f"docker-registry in {ns} to answer GET /v2/ (log: {log})", timeout=REGISTRY_TIMEOUT)
    return found[0]


# --- skopeo ---------------------------------------------------------------------------------------------------------


def _creds(flag: str, creds: tuple[str, str] | None) -> list[str]:
    return [f"--{flag}={creds[0]}:{creds[1]}"] if creds else []


def skopeo(ns: str, *argv: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    """skopeo inside `ns`, accepting any image (no policy.json from this machine decides)."""
    return run_in(ns, "skopeo", "--insecure-policy", *argv, rc=rc, timeout=SKOPEO_TIMEOUT)


def push(
    ns: str, layout: Path, tag: str, dest: str, *, creds: tuple[str, str] | None = None, format: str | None = None
) -> None:
    """Copies the single-manifest image `layout`:`tag` to docker://`dest` ("127.0.0.1:PORT/library/nginx:latest").

    `format="v2s2"` converts it to Docker's manifest and media types on the way (the default keeps OCI's).
    """
    skopeo(ns, "copy", "--dest-tls-verify=false", *_creds("dest-creds", creds),
           *([f"--format={format}"] if format else []), f"oci:{layout}:{tag}", f"docker://{dest}")  # fmt: skip


def push_index(ns: str, layout: Path, tag: str, dest: str, *, creds: tuple[str, str] | None = None) -> None:
    """Copies the image index `layout`:`tag` and every manifest in it (`skopeo copy --all`) to docker://`dest`."""
    skopeo(ns, "copy", "--all", "--dest-tls-verify=false", *_creds("dest-creds", creds),
           f"oci:{layout}:{tag}", f"docker://{dest}")  # fmt: skip


def push_image(ns: str, image: Image, dest: str, *, creds: tuple[str, str] | None = None) -> None:
    """push() or push_index(), whichever `image` needs."""
    (push_index if image.index else push)(ns, image.layout, image.tag, dest, creds=creds)


def push_all(
    ns: str, addr: str, images: Mapping[str, Image], *, creds: tuple[str, str] | None = None
) -> dict[str, str]:
    """Pushes each image as `addr`/library/<name>:latest; returns name -> that reference."""
    refs = {name: f"{addr}/library/{name}:latest" for name in images}
    for name, image in images.items():
        push_image(ns, image, refs[name], creds=creds)
    return refs


def inspect(ns: str, ref: str, *flags: str, creds: tuple[str, str] | None = None) -> Any:
    """`skopeo inspect --tls-verify=false [flags] docker://ref` as JSON (flags: --raw, --config, --override-arch=)."""
    return json.loads(skopeo(ns, "inspect", "--tls-verify=false", *_creds("creds", creds), *flags,
                             f"docker://{ref}").stdout)  # fmt: skip


def pull_rootfs(ns: str, ref: str, workdir: Path, *, creds: tuple[str, str] | None = None) -> Path:
    """Copies docker://`ref` to an OCI layout under `workdir` and unpacks it (umoci); returns the rootfs path."""
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "pulled"
    skopeo(ns, "copy", "--src-tls-verify=false", *_creds("src-creds", creds), f"docker://{ref}",
           f"oci:{layout}:pulled")  # fmt: skip
    return unpack(layout, "pulled", workdir / "bundle")


def unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """`umoci unpack` (as root: owners kept, whiteouts applied); returns bundle/rootfs."""
    sh("umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle), timeout=600)
    return bundle / "rootfs"


def fill_storage(storage: Path, images: Mapping[str, Image], *, workdir: Path) -> None:
    """Pushes `images` into registry storage directory `storage`, through a registry in a throw-away namespace.

    Serve it later, in any namespace, with registry(ns, root, storage=storage, readonly=True): the images are then
    <addr>/library/<name>:latest. Pushing once per session and serving per test saves the pushes.
    """
    with netns("hyprt-fill") as ns, registry(ns, workdir, storage=storage) as addr:
        push_all(ns, addr, images)


@contextmanager
def serving(
    ns: str, root: Path, images: Mapping[str, Image], *, htpasswd: tuple[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """A registry in `ns` holding `images`: yields (address, name -> reference)."""
    with registry(ns, root, htpasswd=htpasswd) as addr:
        yield addr, push_all(ns, addr, images, creds=htpasswd)


# --- running an unpacked rootfs (to check that an image works, without hypr) ----------------------------------------

_CHROOT = r"""
set -e
root=$1 wd=$2 spec=$3 img_path=$4
shift 4
mkdir -p "$root/proc" "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mkdir -p "$root/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
export PATH="$img_path"
exec /usr/sbin/chroot ${spec:+--userspec=$spec} "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$wd" "$@"
"""


def _chroot_argv(ns: str, rootfs: Path, argv: Sequence[str], workdir: str, user: str | None, path: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--pid", "--ipc", "--fork", "--kill-child",
            "/bin/sh", "-c", _CHROOT, "sh", str(rootfs), workdir, user or "", path, *argv]  # fmt: skip


def _chroot_env(env: Mapping[str, str] | None) -> tuple[dict[str, str], str]:
    full = {"HOME": "/root", "PATH": DEFAULT_PATH, **(env or {})}
    return {**full, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, full["PATH"]


@contextmanager
def chroot_run(
    ns: str,
    rootfs: Path,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    workdir: str = "/",
    user: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `argv` in `rootfs` (chroot, own mount, pid and IPC namespaces, /proc, /dev and a fresh /dev/shm) inside
    network namespace `ns`, output to `log`; everything in its pid namespace is killed on exit. `user` is a numeric
    "uid:gid"; the rootfs needs /bin/sh."""
    host_env, path = _chroot_env(env)
    with open(log, "ab") as out:
        proc = subprocess.Popen(_chroot_argv(ns, rootfs, argv, workdir, user, path), env=host_env,
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        _kill_pid_namespace(proc)


def chroot_exec(
    ns: str,
    rootfs: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    workdir: str = "/",
    user: str | None = None,
    rc: int | None = 0,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """chroot_run() to completion, output captured."""
    host_env, path = _chroot_env(env)
    argv_ = _chroot_argv(ns, rootfs, argv, workdir, user, path)
    proc = subprocess.run(argv_, env=host_env, capture_output=True, text=True, timeout=timeout)
    if rc is not None and proc.returncode != rc:
        raise AssertionError(f"{argv} in {rootfs} exited {proc.returncode}, wanted {rc}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")  # fmt: skip
    return proc


def _kill_pid_namespace(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the namespace's init (unshare's child) takes every process in it along; then unshare exits."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()  # unshare --kill-child: its child gets SIGKILL too
        proc.wait()


# --- layer tars -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar entry of a layer: path relative to /, no leading slash."""

    path: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""


def d(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid)


def f(path: str, data: str | bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, data=data.encode() if isinstance(data, str) else data, mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, tarfile.SYMTYPE, mode=0o777, link=target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, tarfile.LNKTYPE, link=target)


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed tar of exactly these entries, in this order (fixed mtime, numeric owners only)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.type, info.mode, info.uid, info.gid, info.mtime = e.type, e.mode, e.uid, e.gid, MTIME
            info.uname = info.gname = ""
            info.linkname = e.link
            info.size = len(e.data) if e.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.type == tarfile.REGTYPE else None)
    return buf.getvalue()


# --- the cache ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """A built image: OCI layout directory + tag. `index`: the tag names an image index (push with push_index)."""

    name: str
    layout: Path
    tag: str = "latest"
    index: bool = False

    @property
    def ref(self) -> str:
        """For umoci --image and skopeo's oci: transport."""
        return f"{self.layout}:{self.tag}"

    def blob(self, digest: str) -> Any:
        return json.loads((self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())

    def descriptor(self) -> dict[str, Any]:
        index = json.loads((self.layout / "index.json").read_text())
        return next(m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == self.tag)

    def manifest(self) -> Any:
        """The manifest (or, for an index, the index) that the tag names."""
        return self.blob(self.descriptor()["digest"])

    def config(self) -> Any:
        """The image config (single-manifest images only)."""
        return self.blob(self.manifest()["config"]["digest"])


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cached(name: str, inputs: Any, build: Callable[[Path, Path], None]) -> Path:
    """The layout built by build(layout, scratch) for these inputs: from the cache, or built once and renamed in.

    A finished layout only ever appears by rename, so a directory that exists is complete; a per-key lock makes
    concurrent workers wait for one build instead of repeating it. Leftovers of a killed build are removed first.
    """
    key = hashlib.sha256(json.dumps([RECIPE_VERSION, name, inputs], sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir()
    final = cache / f"{name}-{key}"
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f".{name}-{key}.lock"):
        if final.is_dir():
            return final
        for stale in cache.glob(f".tmp-{name}-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{key}-", dir=cache))
        try:
            start = time.monotonic()
            (tmp / "scratch").mkdir()
            build(tmp / "layout", tmp / "scratch")
            seconds = round(time.monotonic() - start, 1)
            info = {"name": name, "seconds": seconds, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / "layout" / "hypr-build.json").write_text(json.dumps(info) + "\n")
            os.rename(tmp / "layout", final)
            print(f"hypr test images: built {name} in {seconds} s -> {final}", file=sys.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_seconds(image: Image) -> float | None:
    """How long the image took to build (recorded in the cache when it was built)."""
    try:
        return float(json.loads((image.layout / "hypr-build.json").read_text())["seconds"])
    except (OSError, KeyError, ValueError):
        return None


# --- umoci ----------------------------------------------------------------------------------------------------------


def _umoci_new(layout: Path, tag: str = "latest") -> None:
    sh("umoci", "init", "--layout", str(layout))
    sh("umoci", "new", "--image", f"{layout}:{tag}")


def _add_layer(layout: Path, tag: str, tar: Path, created_by: str) -> None:
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", f"--history.created={CREATED}",
       f"--history.created_by={created_by}", str(tar), timeout=600)  # fmt: skip


def _configure(layout: Path, tag: str, flags: Sequence[str]) -> None:
    """`umoci config` with `flags` ("--config.cmd=x" ...); the config's `created` is fixed."""
    sh("umoci", "config", "--image", f"{layout}:{tag}", f"--created={CREATED}", f"--history.created={CREATED}",
       "--history.created_by=umoci config (hypr test image)", *flags)  # fmt: skip


def _list_flags(flag: str, values: Sequence[str]) -> list[str]:
    """Replace a list in the config (umoci appends to env, labels and ports; cmd/entrypoint are replaced)."""
    clear = {"env": "config.env", "label": "config.labels", "exposedports": "config.exposedports",
             "cmd": "config.cmd", "entrypoint": "config.entrypoint"}[flag]  # fmt: skip
    return [f"--clear={clear}", *(f"--config.{flag}={v}" for v in values)]


def _derived(name: str, base: Image | None, layers: Sequence[Sequence[Entry]], config: Sequence[str]) -> Image:
    """base's layout (or an empty image) + these layers + `umoci config` flags; base's layer blobs are shared."""
    tars = [layer_tar(entries) for entries in layers]
    inputs = {
        "base": base.layout.name if base else None,
        "layers": [hashlib.sha256(t).hexdigest() for t in tars],
        "config": list(config),
    }

    def build(layout: Path, scratch: Path) -> None:
        if base is None:
            _umoci_new(layout)
        else:
            shutil.copytree(base.layout, layout, symlinks=True)
            (layout / "hypr-build.json").unlink(missing_ok=True)
        for i, data in enumerate(tars):
            tar = scratch / f"layer{i}.tar"
            tar.write_bytes(data)
            _add_layer(layout, "latest", tar, f"hypr test image {name}: layer {i + 1} of {len(tars)}")
        if config:
            _configure(layout, "latest", config)
        sh("umoci", "gc", "--layout", str(layout))

    return Image(name, _cached(name, inputs, build))


# --- small images ---------------------------------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""
GROUP = """\
root:x:0:
nogroup:x:65534:
app:x:1000:
extra:x:2000:app
"""


def _busybox_layer() -> list[Entry]:
    applets = sorted(set(sh(str(BUSYBOX), "--list").stdout.split()) - {"busybox"})
    return [
        d("bin"),
        f("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        *(symlink(f"bin/{applet}", "busybox") for applet in applets),
        d("dev"),
        d("etc"),
        f("etc/passwd", PASSWD),
        f("etc/group", GROUP),
        d("home"),
        d("home/app", uid=1000, gid=1000),
        d("proc"),
        d("root", mode=0o700),
        d("run"),
        d("sbin"),
        d("sys"),
        d("tmp", mode=0o1777),
        d("usr"),
        d("usr/bin"),
        d("usr/sbin"),
        d("var"),
    ]


def busybox_base() -> Image:
    """See the module docstring: busybox-static with applet links, users root/nobody/app, groups incl. extra."""
    return _derived("busybox", None, [_busybox_layer()],
                    [*_list_flags("env", [f"PATH={DEFAULT_PATH}"]), *_list_flags("cmd", ["sh"])])  # fmt: skip


LAYERED_LAYER2 = [
    d("data"),
    f("data/keep", "keep\n"),
    f("data/gone", "gone\n"),
    f("data/hl1", "hard linked\n"),
    hardlink("data/hl2", "data/hl1"),
    f("data/owned", "owned by app\n", mode=0o640, uid=1000, gid=1000),
    f("data/mode0751", "#!/bin/sh\necho mode0751\n", mode=0o751),
    symlink("data/link", "keep"),
    d("data/appdir", mode=0o750, uid=1000, gid=1000),
    d("data/dirgone"),
    f("data/dirgone/file", "in a removed directory\n"),
    d("opq"),
    f("opq/old1", "old1\n"),
    f("opq/old2", "old2\n"),
    d("opq/sub"),
    f("opq/sub/old3", "old3\n"),
]
LAYERED_LAYER3 = [
    d("data"),
    f("data/.wh.gone", ""),
    f("data/.wh.dirgone", ""),
    d("opq"),
    f("opq/.wh..wh..opq", ""),
    f("opq/new", "new\n"),
]
LAYERED_DATA = ["appdir", "hl1", "hl2", "keep", "link", "mode0751", "owned"]  # sorted names in /data after unpack
LAYERED_OPQ = ["new"]


def layered() -> Image:
    """busybox + two layers with a hard link, owners, modes, file and directory whiteouts and an opaque dir."""
    return _derived("layered", busybox_base(), [LAYERED_LAYER2, LAYERED_LAYER3], [])


CONFIGURED_CMD = 'echo "$GREETING from $(pwd) as $(id -u):$(id -g)"'
CONFIGURED_OUTPUT = "hello from /srv as 1000:1000"
CONFIGURED_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"]
CONFIGURED_LABELS = {"org.hypr.test": "configured", "org.hypr.test.greeting": "hello"}


def configured() -> Image:
    """Every config field a runtime honours. Run as is, it prints CONFIGURED_OUTPUT ("hello from /srv as 1000:1000")
    from /srv as user app (uid 1000, gid 1000, supplementary groups 1000 and 2000)."""
    return _derived(
        "configured",
        busybox_base(),
        [[d("srv", uid=1000, gid=1000)]],
        [
            *_list_flags("entrypoint", ["/bin/sh", "-c"]),
            *_list_flags("cmd", [CONFIGURED_CMD]),
            *_list_flags("env", CONFIGURED_ENV),
            "--config.workingdir=/srv",
            "--config.user=app",
            *_list_flags("exposedports", ["8080/tcp", "9090/udp"]),
            "--config.stopsignal=SIGUSR1",
            *_list_flags("label", [f"{k}={v}" for k, v in CONFIGURED_LABELS.items()]),
        ],
    )


HTTPD_BODY = "hello from hypr-httpd\n"


def httpd() -> Image:
    """busybox httpd serving /www (GET / -> HTTPD_BODY) on port 80 in the foreground."""
    return _derived(
        "httpd",
        busybox_base(),
        [[d("www"), f("www/index.html", HTTPD_BODY)]],
        [*_list_flags("cmd", ["httpd", "-f", "-p", "80", "-h", "/www"]), *_list_flags("exposedports", ["80/tcp"])],
    )


def shared_base_pair() -> tuple[Image, Image]:
    """alpha and beta: busybox's layer blob (the same digest in both) plus one small layer each."""
    return (
        _derived("alpha", busybox_base(), [[f("alpha", "alpha\n")]], _list_flags("cmd", ["cat", "/alpha"])),
        _derived("beta", busybox_base(), [[f("beta", "beta\n")]], _list_flags("cmd", ["cat", "/beta"])),
    )


def _arch_amd64() -> Image:
    return _derived("arch-amd64", busybox_base(), [[f("arch", "amd64\n")]], _list_flags("cmd", ["cat", "/arch"]))


def _arch_arm64() -> Image:
    return _derived("arch-arm64", None, [[f("arch", "arm64\n")]],
                    ["--architecture=arm64", "--os=linux", *_list_flags("cmd", ["cat", "/arch"])])  # fmt: skip


PLATFORMS = {"amd64": {"architecture": "amd64", "os": "linux"},
             "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"}}  # fmt: skip


def _index_of(name: str, parts: Mapping[str, Image]) -> Image:
    """One layout holding each part's manifest (tagged by its key) and an image index of them all, tagged latest."""

    def build(layout: Path, scratch: Path) -> None:
        layout.mkdir()
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        tagged = []
        for arch, part in parts.items():
            for blob in (part.layout / "blobs" / "sha256").iterdir():
                if not (blobs / blob.name).exists():
                    shutil.copy2(blob, blobs / blob.name)
            desc = part.descriptor()
            tagged.append({"mediaType": OCI_MANIFEST, "digest": desc["digest"], "size": desc["size"],
                           "platform": PLATFORMS[arch]})  # fmt: skip
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": tagged}, indent=2).encode()
        digest = hashlib.sha256(index).hexdigest()
        (blobs / digest).write_bytes(index)
        top = [{"mediaType": OCI_INDEX, "digest": f"sha256:{digest}", "size": len(index),
                "annotations": {REF_NAME: "latest"}}]  # fmt: skip
        for arch, desc in zip(parts, tagged, strict=True):
            top.append({"mediaType": OCI_MANIFEST, "digest": desc["digest"], "size": desc["size"],
                        "annotations": {REF_NAME: arch}})  # fmt: skip
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": top}, indent=2))

    inputs = {arch: part.layout.name for arch, part in parts.items()}
    return Image(name, _cached(name, {"parts": inputs, "platforms": PLATFORMS}, build), index=True)


def multiarch() -> Image:
    """An index: linux/amd64 (busybox + /arch "amd64\\n") and linux/arm64 (only /arch "arm64\\n"); Cmd cat /arch."""
    return _index_of("multiarch", {"amd64": _arch_amd64(), "arm64": _arch_arm64()})


def arm_only() -> Image:
    """An index whose only manifest is linux/arm64."""
    return _index_of("arm-only", {"arm64": _arch_arm64()})


def arm_only_manifest() -> Image:
    """arm_only's arm64 image as a plain manifest (no index): config Architecture arm64."""
    return Image("arm-only-manifest", arm_only().layout, tag="arm64")


# --- real images from Debian packages ------------------------------------------------------------------------------

DEBIAN_SUITE = "bookworm"
MMDEBSTRAP_TIMEOUT = 1200
_DPKG_EXCLUDES = [
    f"--dpkgopt=path-{kind}={path}"
    for kind, path in [
        ("exclude", "/usr/share/doc/*"),
        ("exclude", "/usr/share/man/*"),
        ("exclude", "/usr/share/info/*"),
        ("exclude", "/usr/share/lintian/*"),
        ("exclude", "/usr/share/locale/*"),
        ("include", "/usr/share/locale/locale.alias"),
    ]
]
_TRIM = ["var/cache/apt", "var/lib/apt/lists", "var/log", "var/cache/debconf", "dev"]  # emptied, kept as dirs


def _debian_image(name: str, packages: Sequence[str], customize: Callable[[Path], None], config: Sequence[str],
                  recipe: Any) -> Image:  # fmt: skip
    """mmdebstrap's rootfs (trimmed, then customize(rootfs)) as the one layer of a new image, with `config`."""
    argv = ["mmdebstrap", "--variant=apt", f"--include={','.join(packages)}", "--mode=root", *_DPKG_EXCLUDES,
            DEBIAN_SUITE]  # fmt: skip

    def build(layout: Path, scratch: Path) -> None:
        rootfs = scratch / "rootfs"
        sh(*argv, str(rootfs), timeout=MMDEBSTRAP_TIMEOUT)
        for rel in _TRIM:
            for entry in (rootfs / rel).iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        (rootfs / "var/log/apt").mkdir()
        customize(rootfs)
        tar = scratch / "rootfs.tar"
        sh("tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-cf", str(tar),
           *sorted(os.listdir(rootfs)), timeout=600)  # fmt: skip
        shutil.rmtree(rootfs)
        _umoci_new(layout)
        _add_layer(layout, "latest", tar, f"mmdebstrap --variant=apt --include={','.join(packages)} {DEBIAN_SUITE}")
        tar.unlink()
        _configure(layout, "latest", config)
        sh("umoci", "gc", "--layout", str(layout))

    inputs = {"argv": argv, "trim": _TRIM, "customize": getsource(customize), "recipe": recipe}
    return Image(name, _cached(name, inputs, build))


NGINX_PAGE_MARK = "Welcome to nginx!"


def _customize_nginx(rootfs: Path) -> None:
    logs = rootfs / "var/log/nginx"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "access.log").symlink_to("/dev/stdout")
    (logs / "error.log").symlink_to("/dev/stderr")
    assert (rootfs / "var/www/html/index.nginx-debian.html").is_file(), "nginx's default page is missing"


def nginx() -> Image:
    """Debian's nginx-light serving its default page on port 80, logging to stdout/stderr."""
    config = [
        *_list_flags("env", [f"PATH={DEFAULT_PATH}"]),
        *_list_flags("cmd", ["nginx", "-g", "daemon off;"]),
        *_list_flags("exposedports", ["80/tcp"]),
        "--config.stopsignal=SIGQUIT",
    ]
    return _debian_image("nginx", ["nginx-light"], _customize_nginx, config, {"logs": "stdout", "config": config})


POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# hypr test image: the first start makes a cluster in $PGDATA (trust auth from anywhere) with one table,
# greetings(msg text) = 'hello from db'; then postgres runs in the foreground as user postgres. Another command
# (psql ...) is exec'd as it is.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi
shift
as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
cd /
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
chmod 2775 /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	$as_postgres initdb -D "$PGDATA" --username=postgres --auth=trust --no-locale --encoding=UTF8
	printf 'host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n' >>"$PGDATA/pg_hba.conf"
	printf '%s\n' "CREATE TABLE greetings(msg text);" "INSERT INTO greetings VALUES ('hello from db');" |
		$as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
	echo "hypr-postgres-entrypoint: initialised $PGDATA"
fi
exec $as_postgres postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"""
POSTGRES_PATH = f"/usr/lib/postgresql/15/bin:{DEFAULT_PATH}"
POSTGRES_ENV = [f"PATH={POSTGRES_PATH}", "PGDATA=/var/lib/postgresql/data"]
POSTGRES_GREETING = "hello from db"


def _customize_postgres(rootfs: Path) -> None:
    # postgresql-common's postinst made a cluster "main": the entrypoint makes its own in $PGDATA instead.
    for rel in ("etc/postgresql/15/main", "var/lib/postgresql/15"):
        shutil.rmtree(rootfs / rel)
    (rootfs / "var/log/postgresql").mkdir(exist_ok=True)
    # Without its JIT provider (LLVM: 150 MB of the 370) PostgreSQL silently runs without JIT compilation.
    lib = rootfs / "usr/lib/postgresql/15/lib"
    shutil.rmtree(lib / "bitcode")
    libs = rootfs / "usr/lib/x86_64-linux-gnu"
    for path in [*lib.glob("llvmjit*"), *libs.glob("libLLVM-*.so*"), *libs.glob("libz3.so*")]:
        path.unlink()
    script = rootfs / "usr/local/bin/hypr-postgres-entrypoint"
    script.write_text(POSTGRES_ENTRYPOINT)
    script.chmod(0o755)
    for tool in ("initdb", "postgres", "psql"):
        assert (rootfs / "usr/lib/postgresql/15/bin" / tool).exists(), f"{tool} is missing"


def postgres() -> Image:
    """PostgreSQL 15 (server and psql) with an entrypoint that makes a cluster and table greetings on first start."""
    config = [
        *_list_flags("entrypoint", ["/usr/local/bin/hypr-postgres-entrypoint"]),
        *_list_flags("cmd", ["postgres"]),
        *_list_flags("env", POSTGRES_ENV),
        "--config.user=root",
        *_list_flags("exposedports", ["5432/tcp"]),
        "--config.stopsignal=SIGINT",
    ]
    return _debian_image("postgres", ["postgresql"], _customize_postgres, config,
                         {"entrypoint": POSTGRES_ENTRYPOINT, "config": config})  # fmt: skip


# --- everything -----------------------------------------------------------------------------------------------------

SMALL_IMAGES: dict[str, Callable[[], Image]] = {
    "busybox": busybox_base,
    "layered": layered,
    "configured": configured,
    "httpd": httpd,
    "multiarch": multiarch,
    "arm-only": arm_only,
    "arm-only-manifest": arm_only_manifest,
    "alpha": lambda: shared_base_pair()[0],
    "beta": lambda: shared_base_pair()[1],
}
SLOW_IMAGES: dict[str, Callable[[], Image]] = {"nginx": nginx, "postgres": postgres}
ALL_IMAGES: dict[str, Callable[[], Image]] = {**SMALL_IMAGES, **SLOW_IMAGES}


def build_images(names: Iterable[str] | None = None) -> dict[str, Image]:
    """Builds (or finds in the cache) the named images, default SMALL_IMAGES; name -> Image, for push_all()."""
    return {name: ALL_IMAGES[name]() for name in (SMALL_IMAGES if names is None else names)}
