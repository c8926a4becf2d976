"""The daemon's side of crun: one container per sandbox, its state under the workload's own state dir.

`crun --root <state>/crun ... <workload id>`: so every daemon (and every test) has its own containers, and a
workload's runtime state goes with its state dir. The supervisor (shim.py) runs `crun run`; the daemon asks
`state`, `kill` and `delete`, and the CLI `exec` (through the shim's exec entry).

crun 1.8 compiles the seccomp profile (Docker's: ~300 rules) with libseccomp at every `run`, which is most of its
time; the filter it compiled is in its container state (`seccomp.bpf`, what `crun exec` loads). The daemon keeps
that filter, keyed by the profile and the installed crun and libseccomp, and hands it back to the next `run` of the
same profile through crun's `run.oci.seccomp_bpf_data` annotation: the same filter, without compiling it again.
"""

from __future__ import annotations

import base64
import functools
import glob
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from hypr.errors import KernelError
from hypr.runtime import oci

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default seccomp profile as Debian ships it (package golang-github-containers-common; Podman's variant,
# brought back to Docker's rules by oci.as_dockers).
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
TIMEOUT = 30.0
ROOT = "crun"  # under the workload's state dir
BUNDLE = "bundle"  # likewise: config.json (0600: it holds the workload's environment)
FILTER_ANNOTATION = "run.oci.seccomp_bpf_data"  # crun: this filter (base64) instead of compiling linux.seccomp
COMPILED_FILTER = "seccomp.bpf"  # in crun's state of a container: the filter it compiled (struct sock_filter[])
_LIBSECCOMP = ("/lib/*/libseccomp.so.*", "/usr/lib/*/libseccomp.so.*", "/usr/lib64/libseccomp.so.*",
               "/usr/local/lib/libseccomp.so.*")  # fmt: skip


def binary() -> str:
    found = shutil.which("crun", path=SEARCH_PATH)
    if found is None:
        raise KernelError("crun is not installed (apt-get install crun): sandboxes run on it")
    return found


def root_of(state_dir: Path) -> Path:
    return state_dir / ROOT


def _crun(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [binary(), "--root", str(root_of(state_dir)), *args],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"crun {args[0]}: {exc}") from exc


def exists(state_dir: Path, container: str) -> bool:
    return (root_of(state_dir) / container).is_dir()


def state(state_dir: Path, container: str) -> dict[str, Any] | None:
    """`crun state`: {"status": "running"|"stopped"|..., "pid": ...}, or None when there is no such container."""
    if not exists(state_dir, container):
        return None
    done = _crun(state_dir, "state", container)
    if done.returncode != 0:
        return None
    try:
        found: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return None
    return found


def kill(state_dir: Path, container: str, signal: int) -> bool:
    """False when the container no longer runs."""
    if not exists(state_dir, container):
        return False
    done = _crun(state_dir, "kill", container, str(signal))
    if done.returncode == 0:
        return True
    if "not running" in done.stderr or "No such process" in done.stderr or not exists(state_dir, container):
        return False
    raise KernelError(f"crun kill {container}: {done.stderr.strip()}")


def freeze(state_dir: Path, container: str, *, frozen: bool) -> None:
    """`crun pause` / `crun resume`: the container's cgroup freezer (Docker's pause)."""
    verb = "pause" if frozen else "resume"
    done = _crun(state_dir, verb, container)
    if done.returncode != 0:
        raise KernelError(f"crun {verb} {container}: {done.stderr.strip()}")


def delete(state_dir: Path, container: str) -> None:
    """`crun delete --force`: kills what still runs in the container's cgroup, removes the cgroup and the state."""
    if not exists(state_dir, container):
        return
    done = _crun(state_dir, "delete", "--force", container)
    if done.returncode != 0 and exists(state_dir, container):
        raise KernelError(f"crun delete {container}: {done.stderr.strip()}")


def write_bundle(state_dir: Path, config: dict[str, Any]) -> Path:
    bundle = state_dir / BUNDLE
    bundle.mkdir(mode=0o700, exist_ok=True)
    path = bundle / "config.json"
    tmp = bundle / "config.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, separators=(",", ":"))  # compact: json's C encoder (indent takes the Python one)
    tmp.replace(path)
    return bundle


@functools.lru_cache(maxsize=1)
def _libseccomp() -> tuple[str, ...]:
    """The library's files (globbing is ~10 ms: once; their stat, at every start, sees an upgrade in place)."""
    return tuple(sorted({os.path.realpath(p) for pattern in _LIBSECCOMP for p in glob.glob(pattern)}))


def _toolchain() -> str:
    """crun and libseccomp as installed (path, size, mtime): an upgrade of either compiles every profile again."""

    def stats() -> str:
        return "\n".join(f"{p}:{i.st_size}:{i.st_mtime_ns}" for p in (binary(), *_libseccomp()) for i in [os.stat(p)])

    try:
        return stats()
    except FileNotFoundError:  # libseccomp upgraded to another file name: look again
        _libseccomp.cache_clear()
        return stats()


def filter_key(config: dict[str, Any]) -> str | None:
    """The compiled-filter cache's key of a config.json: its seccomp section and the toolchain; None without one."""
    seccomp = config.get("linux", {}).get("seccomp")
    if seccomp is None:
        return None
    text = json.dumps(seccomp, sort_keys=True, separators=(",", ":")) + "\n" + _toolchain()
    return hashlib.sha256(text.encode()).hexdigest()


def use_cached_filter(config: dict[str, Any], cache: Path, key: str) -> bool:
    """Annotates `config` with the filter compiled before for `key`; False when there is none yet."""
    try:
        data = (cache / f"{key}.bpf").read_bytes()
    except OSError:
        return False
    if not data or len(data) % 8:  # not a whole struct sock_filter[]: compile again (and replace it)
        return False
    config.setdefault("annotations", {})[FILTER_ANNOTATION] = base64.b64encode(data).decode()
    return True


def remember_filter(state_dir: Path, container: str, cache: Path, key: str) -> None:
    """Keeps the filter crun compiled for a running container under `key`. Best effort: a container that has
    already ended (its state gone) just compiles again next time."""
    try:
        data = (root_of(state_dir) / container / COMPILED_FILTER).read_bytes()
        if not data or len(data) % 8:
            return
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = cache / f"{key}.bpf.{os.getpid()}"
        tmp.write_bytes(data)
        tmp.replace(cache / f"{key}.bpf")
    except OSError:
        return


@functools.lru_cache(maxsize=1)
def default_profile() -> dict[str, Any]:
    try:
        profile: dict[str, Any] = json.loads(SECCOMP_PROFILE.read_text())
    except (OSError, ValueError) as exc:
        raise KernelError(
            f"Docker's default seccomp profile {SECCOMP_PROFILE} is missing or unreadable ({exc}): install "
            "golang-github-containers-common; hypr does not run sandboxes without it"
        ) from exc
    return oci.as_dockers(profile)


@functools.lru_cache(maxsize=1)
def kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def available_capabilities() -> tuple[str, ...]:
    """The capabilities this process may hand on: its bounding set (a host or a service manager may have taken
    some away; crun fails to grant one it does not hold)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return oci.CAPABILITIES
    bounding = next((int(line.split()[1], 16) for line in text.splitlines() if line.startswith("CapBnd:")), None)
    if bounding is None:
        return oci.CAPABILITIES
    return tuple(cap for number, cap in enumerate(oci.CAPABILITIES) if bounding >> number & 1)


_SKIPPED_DEVICES = frozenset(("null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"))
_SKIPPED_DIRS = frozenset(("pts", "shm", "mqueue", "fd", ".lxc", ".udev"))


def host_devices(dev: Path = Path("/dev")) -> tuple[oci.Device, ...]:
    """Every character and block device of the host, for a privileged sandbox (as Docker's --privileged); the
    ones the runtime makes in every /dev are left to it."""
    found = []
    for top, dirs, names in os.walk(dev):
        dirs[:] = [d for d in dirs if not (top == str(dev) and d in _SKIPPED_DIRS)]
        for name in names:
            path = os.path.join(top, name)
            if top == str(dev) and name in _SKIPPED_DEVICES:
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            kind = "c" if stat.S_ISCHR(info.st_mode) else "b" if stat.S_ISBLK(info.st_mode) else None
            if kind is not None:
                found.append(oci.Device(path, kind, os.major(info.st_rdev), os.minor(info.st_rdev),
                                        stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid))  # fmt: skip
    return tuple(sorted(found, key=lambda d: d.path))
