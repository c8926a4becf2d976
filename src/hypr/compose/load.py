"""Compose files -> one merged, interpolated mapping, and the project name. Docker compose's rules:

- discovery: the first of FILE_NAMES in the working directory (hypr's own names first);
- `-f a.yml -f b.yml`: later files override earlier ones (mappings merge, `ports` add up, other lists are replaced);
- `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `$VAR`, `$$` -> `$`, from the
  environment, then `.env` beside the first file (the environment wins);
- project name: `-p`, else `name:`, else the directory of the first file, normalised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hypr.compose.errors import ComposeError

FILE_NAMES = (
    "hypr-compose.yml",
    "hypr-compose.yaml",
    "Hyprfile",
    "Hyprfile.yml",
    "Hyprfile.yaml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.yml",
    "compose.yaml",
)
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)
# Lists that docker compose concatenates when files are merged (the others are replaced).
_APPENDED = frozenset({"ports", "expose", "dns", "dns_search", "extra_hosts"})
# Lists docker compose turns into mappings before merging ("K=V" entries).
_KEYED = frozenset({"environment", "labels"})


@dataclass(frozen=True)
class Source:
    """What `load` read: the merged mapping before validation, and where it came from."""

    config: dict[str, Any]
    files: tuple[Path, ...]
    working_dir: Path
    environment: Mapping[str, str]  # the environment interpolation used (process env over .env)


def find_files(files: Sequence[str], cwd: Path) -> tuple[Path, ...]:
    if files:
        paths = tuple((cwd / f).resolve() if f != "-" else Path("-") for f in files)
        for path in paths:
            if not path.is_file():
                raise ComposeError(f"open {path}: no such file or directory")
        return paths
    for name in FILE_NAMES:
        if (cwd / name).is_file():
            return ((cwd / name).resolve(),)
    raise ComposeError(f"no configuration file provided: not found (looked for {', '.join(FILE_NAMES)} in {cwd})")


def read_env_file(path: Path) -> dict[str, str]:
    """A `.env` file: `KEY=value` lines, `#` comments, optional `export `, single or double quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ComposeError(f"{path}:{number}: unexpected line {raw!r}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Substitute variables in every string value (keys are left alone, as docker compose does)."""
    if isinstance(value, str):
        return _substitute(value, env, path)
    if isinstance(value, Mapping):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _substitute(text: str, env: Mapping[str, str], path: str) -> str:
    """A small scanner rather than a regex, so that defaults may themselves hold `${...}`."""
    out, i = [], 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        nxt = text[dollar + 1 : dollar + 2]
        if nxt == "$":
            out.append("$")
            i = dollar + 2
        elif nxt == "{":
            end = _closing_brace(text, dollar + 2)
            if end < 0:
                raise ComposeError(f"{path}: invalid interpolation format for {text!r}: unclosed ${{")
            out.append(_braced(text[dollar + 2 : end], env, path, text))
            i = end + 1
        elif plain := _NAME.match(text, dollar + 1):
            out.append(env.get(plain.group(0), ""))
            i = plain.end()
        else:
            out.append("$")  # a lone `$` stays, as docker compose leaves it
            i = dollar + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _braced(inner: str, env: Mapping[str, str], path: str, text: str) -> str:
    match = _BRACED.fullmatch(inner)
    if not match:
        raise ComposeError(f"{path}: invalid interpolation format for {text!r}: ${{{inner}}}")
    name, op, arg = match["name"], match["op"], match["arg"] or ""
    value = env.get(name)
    if op is None:
        return value or ""
    unset_or_empty = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return _substitute(arg, env, path) if unset_or_empty else str(value)
    if op.endswith("+"):
        return "" if unset_or_empty else _substitute(arg, env, path)
    if unset_or_empty:  # `?`: required
        raise ComposeError(f"{path}: required variable {name} is missing a value: {arg or name}")
    return str(value)


def _keyed(value: Any) -> Any:
    if isinstance(value, list):
        pairs: dict[str, Any] = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            pairs[key] = val if sep else None
        return pairs
    return value


def normalise_lists(config: dict[str, Any]) -> dict[str, Any]:
    services = config.get("services")
    if isinstance(services, dict):
        for service in services.values():
            if not isinstance(service, dict):
                continue
            for key in _KEYED & service.keys():
                service[key] = _keyed(service[key])
            if isinstance(service.get("networks"), list):
                service["networks"] = {str(n): None for n in service["networks"]}
            if isinstance(service.get("depends_on"), list):
                service["depends_on"] = {str(n): {"condition": "service_started"} for n in service["depends_on"]}
    return config


def merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = merge(base[k], v, str(k)) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in _APPENDED:
        return base + [item for item in override if item not in base]
    return override


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path}: invalid YAML: {exc}") from None
    except OSError as exc:
        raise ComposeError(f"open {path}: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: top-level object must be a mapping")
    return data


def load(
    files: Sequence[str], cwd: Path, environ: Mapping[str, str],
    validate: Callable[[Path, dict[str, Any]], None] = lambda path, config: None,
) -> Source:  # fmt: skip
    """`validate` sees each file as written (interpolated), before the merge rewrites lists into mappings."""
    paths = find_files(files, cwd)
    working_dir = paths[0].parent
    env = {**read_env_file(working_dir / ".env"), **environ}
    config: dict[str, Any] = {}
    for path in paths:
        raw = interpolate(read_yaml(path), env)
        validate(path, raw)
        config = merge(config, normalise_lists(raw))
    return Source(config=config, files=paths, working_dir=working_dir, environment=env)


def normalise_project_name(text: str) -> str:
    """Docker compose's rule for names taken from a directory: lower-case, keep [a-z0-9_-], no leading -/_."""
    return re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")


def project_name(explicit: str | None, source: Source) -> str:
    if explicit:
        name, what = explicit, "project name"
    elif isinstance(source.config.get("name"), str) and source.config["name"]:
        name, what = source.config["name"], "name: in the compose file"
    else:
        name, what = normalise_project_name(source.working_dir.name), f"directory name {source.working_dir.name!r}"
    if not _PROJECT_NAME.match(name):
        raise ComposeError(
            f"invalid project name {name!r} (from the {what}): it must contain only lower-case letters, digits, "
            "dashes and underscores, and start with a letter or digit"
        )
    return name
