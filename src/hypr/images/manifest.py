"""OCI and Docker manifests, indexes and image configs: pure parsing and platform choice.

Media types from the OCI image spec and Docker's registry v2 schema 2. A manifest list / OCI index is resolved to
one manifest for the wanted platform as Docker does (os, architecture, then variant when one is asked for).
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from hypr.errors import InvalidParameter, NotFound

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = _platform.machine()
    return Platform("linux", _ARCHES.get(machine, machine))


# containerd's platforms.Parse (what dockerd uses): its known operating systems and architectures
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd",
    "openbsd", "plan9", "solaris", "windows", "zos",
))  # fmt: skip
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle", "mips64", "mips64le",
    "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64",
    "wasm",
))  # fmt: skip


def parse_platform(text: str | None) -> Platform:
    """Docker's `--platform os[/arch[/variant]]` (containerd's rules: `arm64` alone means linux/arm64, `linux`
    alone this host's architecture, an unknown OS is refused); empty means this host's. Raises InvalidParameter."""
    if not text:
        return host_platform()
    parts = text.lower().split("/")
    unknown = InvalidParameter(f'"{text}": unknown operating system or architecture: invalid argument')
    if len(parts) > 3 or not all(parts):
        raise unknown
    if len(parts) == 1:
        if parts[0] in _KNOWN_OS:
            return Platform(parts[0], host_platform().architecture)
        arch = _ARCHES.get(parts[0], parts[0])
        if arch not in _KNOWN_ARCH:
            raise unknown
        return Platform("linux", arch)
    if parts[0] not in _KNOWN_OS:
        raise unknown
    return Platform(parts[0], _ARCHES.get(parts[1], parts[1]), parts[2] if len(parts) == 3 else "")


def check_runnable(config: dict[str, Any], image: str) -> None:
    """An image runs only on its own OS and architecture: hypr emulates none (Docker would start it and fail with
    `exec format error`, or run it under binfmt's QEMU); a config that names no architecture is given the benefit
    of the doubt. Raises InvalidParameter naming both platforms."""
    actual = Platform(
        str(config.get("os") or ""), str(config.get("architecture") or ""), str(config.get("variant") or "")
    )
    host = host_platform()
    if actual.architecture and (actual.os or host.os, actual.architecture) != (host.os, host.architecture):
        raise InvalidParameter(
            f"image {image} is for {actual} and this host runs {host} only (hypr emulates no other architecture)"
        )


def check_host_platform(text: str) -> None:
    """A `platform` asked of `docker run`/`create` other than this host's is refused by name (nothing emulates it)."""
    wanted, host = parse_platform(text), host_platform()
    if (wanted.os, wanted.architecture) != (host.os, host.architecture):
        raise InvalidParameter(
            f"platform {wanted} is not supported: this host runs {host} only (hypr emulates no other architecture)"
        )


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def loads(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"the registry answered a {what} that is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"the registry answered a {what} that is not a JSON object")
    return data


def is_index(manifest: dict[str, Any]) -> bool:
    return manifest.get("mediaType") in INDEX_TYPES or (
        "manifests" in manifest and "layers" not in manifest and "config" not in manifest
    )


def choose(index: dict[str, Any], wanted: Platform, ref: str) -> str:
    """The digest of `wanted`'s manifest in an index. Raises NotFound with Docker's message."""
    candidates = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        if plat.get("os") != wanted.os or plat.get("architecture") != wanted.architecture:
            continue
        if wanted.variant and plat.get("variant", "") != wanted.variant:
            continue
        if isinstance(entry.get("digest"), str):
            candidates.append(entry["digest"])
    if not candidates:
        raise NotFound(f"no matching manifest for {wanted} in the manifest list entries: {ref}")
    return str(candidates[0])


def config_digest(manifest: dict[str, Any]) -> str:
    config = manifest.get("config")
    if manifest.get("schemaVersion") != 2 or not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise InvalidParameter("unsupported manifest: only OCI and Docker schema 2 image manifests can be pulled")
    return str(config["digest"])


def layers(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """(digest, compressed size) of each layer, in order."""
    return [(str(layer.get("digest")), int(layer.get("size") or 0)) for layer in manifest.get("layers") or []]


def check_platform(config: dict[str, Any], wanted: Platform, ref: str) -> None:
    """A single-platform image for another architecture is refused before any layer is fetched (Docker's
    wording)."""
    actual = Platform(str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant", "")))
    if (actual.os, actual.architecture) != (wanted.os, wanted.architecture) or (
        wanted.variant and actual.variant != wanted.variant
    ):
        raise InvalidParameter(
            f"image with reference {ref} was found but does not match the specified platform: wanted {wanted},"
            f" actual: {actual}"
        )


@dataclass(frozen=True)
class RunConfig:
    """What of an image's config a workload inherits (the `config` object of the OCI image config)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "K=V", in order
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    stop_signal: str = ""
    labels: tuple[tuple[str, str], ...] = ()


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def run_config(image_config: dict[str, Any]) -> RunConfig:
    c = image_config.get("config") or {}
    if not isinstance(c, dict):
        return RunConfig()
    ports = c.get("ExposedPorts") or {}
    labels = c.get("Labels") or {}
    return RunConfig(
        entrypoint=_strings(c.get("Entrypoint")),
        cmd=_strings(c.get("Cmd")),
        env=_strings(c.get("Env")),
        workdir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
        exposed_ports=tuple(sorted(str(p) if "/" in str(p) else f"{p}/tcp" for p in ports))
        if isinstance(ports, dict)
        else (),
        stop_signal=str(c.get("StopSignal") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
    )
