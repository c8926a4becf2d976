"""A service's confinement and mounts as the HostConfig fields of Docker's container-create body (pure).

Keys: privileged, cap_add, cap_drop, security_opt, read_only, pids_limit, tmpfs, volumes. The daemon validates the
values (services/confinement.py) exactly as for `hypr run`; this module only maps compose's spellings onto Docker's
and resolves what only the project knows: bind sources relative to the project directory, as docker compose does.
Named and anonymous volumes are refused by name, since hypr has no volumes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypr.compose.errors import ComposeError
from hypr.compose.values import one_or_many, parse_bytes

_FLAGS = (("privileged", "Privileged"), ("read_only", "ReadonlyRootfs"))
_LISTS = (("cap_add", "CapAdd"), ("cap_drop", "CapDrop"), ("security_opt", "SecurityOpt"))


def host_config(raw: Mapping[str, Any], working_dir: Path, where: str) -> dict[str, Any]:
    """The HostConfig fields for one service's mapping; only the keys it sets."""
    found: dict[str, Any] = {}
    for key, field in _FLAGS:
        if raw.get(key) is not None:
            found[field] = bool(raw[key])
    for key, field in _LISTS:
        if raw.get(key):
            found[field] = [str(v) for v in raw[key]]
    if raw.get("pids_limit") is not None:
        found["PidsLimit"] = int(raw["pids_limit"])
    if raw.get("tmpfs"):
        found["Tmpfs"] = dict(_tmpfs_entry(str(t)) for t in one_or_many(raw["tmpfs"]))
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    for index, volume in enumerate(raw.get("volumes") or ()):
        place = f"{where}.volumes[{index}]"
        if isinstance(volume, str):
            binds.append(_short_volume(volume, working_dir, place))
        else:
            mount = _long_volume(volume, working_dir, place)
            (binds.append(mount) if isinstance(mount, str) else mounts.append(mount))
    if binds:
        found["Binds"] = binds
    if mounts:
        found["Mounts"] = mounts
    return found


def _tmpfs_entry(entry: str) -> tuple[str, str]:
    """`/run` or `/run:size=64m` -> ("/run", "size=64m") (Docker's --tmpfs)."""
    target, _, options = entry.partition(":")
    return target, options


def _source(source: str, working_dir: Path, place: str) -> str:
    """A bind source: absolute, `~`, or relative to the project directory (`.` / `..`); anything else names a
    volume."""
    if source.startswith("/"):
        return posixpath.normpath(source)
    if source.startswith("~"):
        return str(Path(source).expanduser())
    if source.startswith("."):
        return posixpath.normpath(str(working_dir / source))
    raise ComposeError(f"{place}: named volume {source!r} is not supported by hypr; bind a host directory instead")


def _short_volume(spec: str, working_dir: Path, place: str) -> str:
    """compose's `SOURCE:TARGET[:MODE]` -> Docker's Binds entry with an absolute source."""
    source, sep, rest = spec.partition(":")
    if not sep:
        raise ComposeError(f"{place}: anonymous volume {spec!r} is not supported by hypr; bind a host directory")
    return f"{_source(source, working_dir, place)}:{rest}"


def _long_volume(volume: Mapping[str, Any], working_dir: Path, place: str) -> str | dict[str, Any]:
    """compose's long syntax: a bind becomes a Binds entry (docker compose creates a missing host directory), a
    tmpfs a Mounts object."""
    kind, target = volume.get("type"), str(volume.get("target") or "")
    if kind == "bind":
        propagation = (volume.get("bind") or {}).get("propagation")
        mode = ",".join(filter(None, ["ro" if volume.get("read_only") else "", propagation or ""]))
        source = _source(str(volume.get("source") or ""), working_dir, place)
        return f"{source}:{target}" + (f":{mode}" if mode else "")
    if kind == "tmpfs":
        tmpfs = volume.get("tmpfs") or {}
        options = {k: v for k, v in (("SizeBytes", tmpfs.get("size")), ("Mode", tmpfs.get("mode"))) if v is not None}
        if "SizeBytes" in options:
            options["SizeBytes"] = parse_bytes(options["SizeBytes"], f"{place}.tmpfs.size")
        if isinstance(options.get("Mode"), str):  # "1777": octal digits, as chmod reads them
            try:
                options["Mode"] = int(options["Mode"].removeprefix("0o"), 8)
            except ValueError:
                raise ComposeError(f"{place}.tmpfs.mode: invalid file mode {options['Mode']!r}") from None
        return {"Type": "tmpfs", "Target": target, "ReadOnly": bool(volume.get("read_only")), "TmpfsOptions": options}
    raise ComposeError(f"{place}: volume type {kind!r} is not supported by hypr (bind, tmpfs)")
