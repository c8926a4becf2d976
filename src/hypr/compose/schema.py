"""Validation against the compose-spec JSON schema (docker-compose 1.29.2's `compose_spec.json`, fetched at set-up by
`scripts/fetch-compose-schema.sh`), errors named by their path in the file, and warnings for keys hypr ignores.

The schema predates some keys hypr supports; they are added to it in memory, nowhere else: the top-level `name`,
and `host_ip` / a string `published` in the long port syntax, `pull_policy: missing`, a service network's
`gw_priority` and a network's `enable_ipv4` (IPv6-only networks).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from hypr.compose.errors import ComposeError
from hypr.errors import HyprError
from hypr.ports import parse_publish

SCHEMA_PATH = Path(__file__).parent / "_schema" / "compose_spec.json"
SCHEMA_ENV = "HYPR_COMPOSE_SCHEMA"

SUPPORTED_TOP = frozenset({"version", "name", "services", "networks"})
SUPPORTED_SERVICE = frozenset({
    "image", "command", "entrypoint", "environment", "hostname", "ports", "networks", "depends_on", "restart",
    "labels", "container_name", "runtime", "cpus", "mem_limit", "pull_policy", "user", "working_dir", "stop_signal",
    "expose", "dns", "dns_search", "dns_opt", "extra_hosts", "domainname", "privileged", "cap_add", "cap_drop",
    "security_opt", "read_only", "pids_limit", "tmpfs", "volumes", "platform", "deploy",
})  # fmt: skip
SUPPORTED_DEPLOY = frozenset({"restart_policy"})  # docker compose's reading of deploy outside a swarm: this one
SUPPORTED_RESTART_POLICY = frozenset({"condition", "max_attempts"})
SUPPORTED_NETWORK = frozenset({"name", "driver", "driver_opts", "ipam", "internal", "labels", "external",
                               "enable_ipv4", "enable_ipv6", "attachable"})  # fmt: skip
SUPPORTED_SERVICE_NETWORK = frozenset({"aliases", "ipv4_address", "ipv6_address", "priority", "gw_priority"})
SUPPORTED_PORT = frozenset({"target", "published", "host_ip", "protocol", "mode"})


def schema_path() -> Path:
    return Path(os.environ.get(SCHEMA_ENV) or SCHEMA_PATH)


def load_schema(path: Path | None = None) -> dict[str, Any]:
    path = path or schema_path()
    try:
        schema = json.loads(path.read_text())
    except FileNotFoundError:
        raise ComposeError(
            f"the compose-spec schema is missing ({path}): run `make setup` or `scripts/fetch-compose-schema.sh` "
            f"(or point {SCHEMA_ENV} at a compose_spec.json)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ComposeError(f"cannot read the compose-spec schema {path}: {exc}") from None
    return extend_schema(schema)


def extend_schema(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    schema.setdefault("properties", {}).setdefault("name", {"type": "string"})
    for choice in schema["definitions"]["service"]["properties"]["ports"]["items"].get("oneOf", []):
        if choice.get("type") == "object":
            choice["properties"].setdefault("host_ip", {"type": "string"})
            choice["properties"]["published"] = {"type": ["string", "integer"]}
    network = schema["definitions"].get("network", {}).get("properties")
    if network is not None:
        network.setdefault("enable_ipv4", {"type": "boolean"})
    service = schema["definitions"]["service"]["properties"]
    pull = service.get("pull_policy", {})
    if "enum" in pull and "missing" not in pull["enum"]:
        pull["enum"] = [*pull["enum"], "missing"]
    networks = service.get("networks", {}).get("oneOf", [])
    for choice in networks:
        for entry in (choice.get("patternProperties") or {}).values():
            for option in entry.get("oneOf", []):
                if option.get("type") == "object":
                    option["properties"].setdefault("gw_priority", {"type": "integer"})
    return schema


def _is_port(value: object) -> bool:
    return bool(parse_publish(str(value)))


def _is_expose(value: object) -> bool:
    low, _, high = str(value).split("/")[0].partition("-")
    return 0 < int(low) <= int(high or low) <= 65535


def _is_subnet(value: object) -> bool:
    return bool(ipaddress.ip_network(str(value), strict=False))


def format_checker() -> jsonschema.FormatChecker:
    """The schema's own formats (docker compose registers the same three)."""
    checker = jsonschema.FormatChecker(())
    checker.checks("ports", raises=(HyprError, ValueError))(_is_port)
    checker.checks("expose", raises=(ValueError,))(_is_expose)
    checker.checks("subnet_ip_address", raises=(ValueError,))(_is_subnet)
    return checker


def path_text(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _leaf(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf, the alternative that got furthest into the document is the one the author meant."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        deepest = max(len(e.absolute_path) for e in error.context)
        candidates = [e for e in error.context if len(e.absolute_path) == deepest]
        if deepest > len(error.absolute_path) or any(e.validator != "type" for e in candidates):
            return _leaf(min(candidates, key=lambda e: (e.validator == "type", str(e.message))))
    return error


def _message(error: ValidationError) -> str:
    error = _leaf(error)
    where = path_text(error.absolute_path)
    if error.validator in ("oneOf", "anyOf") and error.context:
        types = sorted({t for e in error.context if e.validator == "type" for t in _as_list(e.validator_value)})
        if types:
            return f"{where}: must be {' or '.join(_article(t) for t in types)}, not {_describe(error.instance)}"
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed and not str(k).startswith("x-"))
        return f"{where}: additional propert{'ies' if len(extra) > 1 else 'y'} {', '.join(extra)} not allowed"
    if error.validator == "format":
        kind = _FORMATS.get(error.validator_value, error.validator_value)
        return f"{where}: {error.instance!r} is not a valid {kind}"
    return f"{where}: {error.message}"


_FORMATS = {"ports": "port specification", "expose": "port", "subnet_ip_address": "subnet"}


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _article(kind: str) -> str:
    words = {"array": "a list", "object": "a mapping", "null": "empty", "integer": "an integer"}
    return words.get(kind, f"a {kind}")


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def validate(config: Mapping[str, Any], schema: Mapping[str, Any], source: str = "the compose file") -> None:
    """Raise one ComposeError listing every schema violation, each as `path: message`."""
    # The file says draft 2019-09 with a trailing `#` that jsonschema does not recognise: name the draft ourselves.
    validator = jsonschema.Draft201909Validator(schema, format_checker=format_checker())
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = list(dict.fromkeys(_message(e) for e in errors))
        raise ComposeError(f"validating {source}:\n  " + "\n  ".join(lines))


def _unsupported(keys: Iterable[Any], supported: frozenset[str]) -> list[str]:
    return sorted(str(k) for k in keys if str(k) not in supported and not str(k).startswith("x-"))


def unsupported_keys(config: Mapping[str, Any]) -> list[str]:
    """Warnings for keys that validate but that hypr does not carry out."""
    found: list[tuple[str, list[str]]] = [("(top level)", _unsupported(config, SUPPORTED_TOP))]
    for name, service in (config.get("services") or {}).items():
        service = service or {}
        found.append((f"services.{name}", _unsupported(service, SUPPORTED_SERVICE)))
        networks = service.get("networks")
        if isinstance(networks, Mapping):
            for net, options in networks.items():
                found.append(
                    (f"services.{name}.networks.{net}", _unsupported(options or {}, SUPPORTED_SERVICE_NETWORK))
                )
        deploy = service.get("deploy") or {}
        found.append((f"services.{name}.deploy", _unsupported(deploy, SUPPORTED_DEPLOY)))
        policy = deploy.get("restart_policy") or {}
        found.append((f"services.{name}.deploy.restart_policy", _unsupported(policy, SUPPORTED_RESTART_POLICY)))
        for index, port in enumerate(service.get("ports") or []):
            if isinstance(port, Mapping):
                found.append((f"services.{name}.ports[{index}]", _unsupported(port, SUPPORTED_PORT)))
    for name, network in (config.get("networks") or {}).items():
        found.append((f"networks.{name}", _unsupported(network or {}, SUPPORTED_NETWORK)))
    return [f"{where}: unsupported key{'s' if len(keys) > 1 else ''} ignored: {', '.join(keys)}"
            for where, keys in found if keys]  # fmt: skip
