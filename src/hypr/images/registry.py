"""Talking to registries, through skopeo (never our own HTTP code): manifests, configs, and copying an image's
blobs into our OCI layout. skopeo brings Docker Hub's token auth, credentials (REGISTRY_AUTH_FILE,
${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json), registries.conf (mirrors, insecure registries,
blocked registries) and digest verification of every blob.

Our own additions follow dockerd: registries on loopback are spoken to over plain HTTP, and so are those listed as
insecure (`HYPR_INSECURE_REGISTRIES` or daemon.json's `insecure-registries`); docker.io pulls try each of
`registry-mirrors` first, in order, then docker.io itself.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import HyprError, InvalidParameter, KernelError, NotFound, RegistryError
from hypr.images.reference import DEFAULT_REGISTRY, Reference
from hypr.images.tools import bound_to_daemon, run_tool

SKOPEO = "skopeo"
INSPECT_TIMEOUT = 60.0  # seconds for one manifest or config fetch
COPY_TIMEOUT = 3600.0  # a whole image
CANCEL_POLL = 0.1  # seconds between looks at a pull's cancel flag


@dataclass(frozen=True)
class Credentials:
    """From the API's X-Registry-Auth header (docker login's credentials, sent by the client per pull)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    @classmethod
    def from_header(cls, header: str | None) -> Credentials | None:
        """Docker's X-Registry-Auth: base64url(JSON {username, password, serveraddress} or {identitytoken})."""
        if not header:
            return None
        try:
            padded = header + "=" * (-len(header) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, TypeError):
            raise InvalidParameter("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        if not isinstance(data, dict):
            raise InvalidParameter("invalid X-Registry-Auth header: not a JSON object")
        creds = cls(
            str(data.get("username") or ""), str(data.get("password") or ""), str(data.get("identitytoken") or "")
        )
        return creds if creds.username or creds.identity_token else None


@dataclass(frozen=True)
class RegistryConfig:
    insecure: tuple[str, ...] = ()  # "host:port" or "host"
    mirrors: tuple[str, ...] = ()  # for docker.io: "host:port" or "https://host"
    registries_conf: str = ""  # a registries.conf other than the system's /etc/containers/registries.conf

    def tls_verify(self, ref: Reference) -> bool:
        """dockerd's rules: plain HTTP (or TLS unverified) to loopback, to a registry listed as insecure by
        `host[:port]` or by a CIDR holding its address, and to a mirror given as `http://`."""
        host = ref.registry.rsplit(":", 1)[0] if ":" in ref.registry and not ref.registry.endswith("]") else ""
        plain_mirrors = [m.removeprefix("http://").rstrip("/") for m in self.mirrors if m.startswith("http://")]
        listed = {*self.insecure, *plain_mirrors}
        return not (ref.is_loopback or ref.registry in listed or (host and host in listed) or self._in_cidr(ref))

    def _in_cidr(self, ref: Reference) -> bool:
        host = ref.registry.rsplit(":", 1)[0] if not ref.registry.endswith("]") else ref.registry
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False  # a name is matched by name only (dockerd also resolves it; hypr does no DNS here)
        for entry in self.insecure:
            with contextlib.suppress(ValueError):
                if "/" in entry and address in ipaddress.ip_network(entry, strict=False):
                    return True
        return False

    def sources(self, ref: Reference) -> list[Reference]:
        """Where to pull `ref` from, in order: docker.io's mirrors, then the registry the name says."""
        if ref.registry != DEFAULT_REGISTRY:
            return [ref]
        mirrored = [
            ref.with_registry(m.removeprefix("https://").removeprefix("http://").rstrip("/")) for m in self.mirrors
        ]
        return [*mirrored, ref]


def _detail(stderr: str) -> str:
    """skopeo's last log line, without its logrus wrapping and its `Error parsing image name "...": ` prefix."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "skopeo failed"
    text = text.split('msg="', 1)[-1].removesuffix('"').replace('\\"', '"')
    if text.startswith("Error parsing image name") and '": ' in text:
        text = text.split('": ', 1)[1]
    return text


def _without_names(text: str, ref: Reference) -> str:
    """`text` with the image's own names cut out, so that only skopeo's words are classified: a port such as
    :44015 holds "401", and a repository or tag may be called `denied`."""
    for part in sorted(
        {ref.name, ref.registry, ref.repository, ref.tag or "", ref.digest or ""}, key=len, reverse=True
    ):
        if part:
            text = text.replace(part, "<name>")
    return text.lower()


def pull_error(stderr: str, ref: Reference) -> HyprError:
    """skopeo's failure -> Docker's message and status."""
    text = _detail(stderr)
    lower = _without_names(text, ref)
    if any(s in lower for s in ("unauthorized", "denied", "authentication required")) or re.search(r"\b401\b", lower):
        return NotFound(
            f"pull access denied for {ref.familiar_name}, repository does not exist or may require 'docker login':"
            f" {text}"
        )
    if "manifest unknown" in lower or "name unknown" in lower:
        shown = f"{ref.familiar_name}@{ref.digest}" if ref.digest else ref.tagged
        return NotFound(f"manifest for {shown} not found: manifest unknown: manifest unknown")
    if "no space left" in lower:
        return KernelError(f"pull {ref.familiar_name}: no space left on device: {text}")
    if "digest" in lower and any(s in lower for s in ("mismatch", "did not match", "verif", "expected")):
        return RegistryError(
            f"pull {ref.familiar_name}: a blob did not match its digest (corrupt or truncated): {text}"
        )
    return RegistryError(text)


class Skopeo:
    def __init__(self, config: RegistryConfig, *, tmp_dir: Path, skopeo: str = SKOPEO) -> None:
        self.config = config
        self.tmp_dir = tmp_dir  # where per-pull credential files live (0600, removed after the call)
        self.skopeo = skopeo

    @contextmanager
    def _auth_args(self, ref: Reference, creds: Credentials | None) -> Iterator[list[str]]:
        if creds is None:
            yield []
            return
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if creds.identity_token:
            entry = {"identitytoken": creds.identity_token}
        else:
            entry = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
        fd, path = tempfile.mkstemp(prefix="auth-", suffix=".json", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp: 0600, never on a command line
                json.dump({"auths": {ref.registry: entry}}, f)
            yield ["--authfile", path]
        finally:
            Path(path).unlink(missing_ok=True)

    def _run(self, argv: Sequence[str], ref: Reference, timeout: float) -> bytes:
        late = RegistryError(f"registry {ref.registry} did not answer for {ref} within {timeout:.0f}s")
        done = run_tool([*self._skopeo(), *argv], timeout=timeout, package="skopeo", timed_out=late)
        if done.returncode != 0:
            raise pull_error(done.stderr.decode(errors="replace"), ref)
        return done.stdout

    def _skopeo(self) -> list[str]:
        """skopeo with its global options (skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF: the flag says it)."""
        conf = self.config.registries_conf
        return [self.skopeo, *(["--registries-conf", conf] if conf else [])]

    def _tls(self, ref: Reference) -> list[str]:
        return [] if self.config.tls_verify(ref) else ["--tls-verify=false"]

    def manifest(self, ref: Reference, creds: Credentials | None, *, config: bool = False) -> bytes:
        """The raw manifest (or index) `ref` names; with config=True the raw image config of a manifest ref."""
        with self._auth_args(ref, creds) as auth:
            extra = ["--config"] if config else []
            return self._run(
                ["inspect", "--raw", *extra, *self._tls(ref), *auth, f"docker://{ref.remote}"], ref, INSPECT_TIMEOUT
            )

    def copy(
        self,
        ref: Reference,
        creds: Credentials | None,
        layout: Path,
        tag: str,
        on_line: Callable[[str], None],
        cancel: threading.Event | None = None,
    ) -> None:
        """Copy one image manifest (by digest) and its blobs into the OCI layout at `layout` under `tag`. Blobs
        already in the layout are not fetched again (skopeo reuses them); each blob is verified against its
        digest before it is renamed into place. Setting `cancel` kills skopeo (blobs complete so far stay) and
        raises Cancelled."""
        tls = [] if self.config.tls_verify(ref) else ["--src-tls-verify=false"]
        with self._auth_args(ref, creds) as auth:
            auth = [a.replace("--authfile", "--src-authfile") for a in auth]
            argv = [*self._skopeo(), "copy", *tls, *auth, f"docker://{ref.remote}", f"oci:{layout}:{tag}"]
            proc = subprocess.Popen(
                bound_to_daemon(argv, package="skopeo"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stdout is not None and proc.stderr is not None
            with _killed_on(cancel, proc):
                for line in proc.stdout:
                    on_line(line.decode(errors="replace").rstrip())
                stderr = proc.stderr.read().decode(errors="replace")
                try:
                    code = proc.wait(timeout=COPY_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise RegistryError(f"pull {ref}: timed out") from None
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"pull {ref}: cancelled (every client went away)")
        if code != 0:
            raise pull_error(stderr, ref)


class Cancelled(HyprError):
    """A pull stopped because no client waits for it any more (dockerd cancels a pull its client left)."""


@contextmanager
def _killed_on(cancel: threading.Event | None, proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Kill `proc` as soon as `cancel` is set, while the block runs."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(CANCEL_POLL):
            if cancel.is_set():
                proc.kill()
                return

    watcher = threading.Thread(target=watch, name="pull-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
