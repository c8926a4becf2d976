"""`hypr run/ps/exec/stop/start/restart/kill/rm/logs/inspect`: Docker's words, flags and exit codes."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hypr.cli.context import (
    client_of,
    for_each,
    inspect_each,
    network_names,
    parse_filters,
    parse_pairs,
    workload_names,
)
from hypr.cli.output import echo_json_lines, short_id, table
from hypr.errors import HyprError, NotFound, Unavailable

if TYPE_CHECKING:
    from hypr.client import Client


class RunCommand(click.Command):
    """Options may also follow IMAGE (`hypr run nginx -p 8080:80`): they are moved in front of it, up to the first
    word that is not one of ours (or `--`); from there on everything is the workload's command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_options(self, args))


def _option_arity(command: click.Command) -> dict[str, int]:
    arity = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in [*param.opts, *param.secondary_opts]:
                arity[opt] = 0 if param.is_flag else 1
    return arity


def _option_length(token: str, rest: Sequence[str], arity: dict[str, int]) -> int:
    """How many words an option at `token` spans (0: not one of ours)."""
    if token in arity:
        return 1 + arity[token] if len(rest) >= arity[token] else 0
    name, eq, _ = token.partition("=")
    if eq and arity.get(name) == 1:
        return 1
    if token.startswith("-") and not token.startswith("--") and len(token) > 2:
        if f"-{token[1]}" in arity and arity[f"-{token[1]}"] == 1:
            return 1  # -p8080:80
        if all(arity.get(f"-{c}") == 0 for c in token[1:]):
            return 1  # -dt
    return 0


def hoist_options(command: click.Command, args: list[str]) -> list[str]:
    arity = _option_arity(command)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += max(_option_length(args[i], args[i + 1 :], arity), 1)
    if i >= len(args):
        return args
    before, image, after = args[:i], args[i], args[i + 1 :]
    j = 0
    while j < len(after):
        if after[j] == "--":
            return [*before, *after[:j], image, *after[j + 1 :]]
        span = _option_length(after[j], after[j + 1 :], arity)
        if not span:
            break
        j += span
    return [*before, *after[:j], image, *after[j:]]


@click.command("run", cls=RunCommand, context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the ID.")
@click.option("--name", help="Assign a name to the workload.")
@click.option(
    "--network",
    "networks",
    multiple=True,
    shell_complete=network_names,
    help="Connect to a network (repeatable): NAME, or name=NAME[,alias=A][,ip=IP][,ip6=IP][,gw-priority=N]...",
)
@click.option("--ip", help="IPv4 address on the first network.")
@click.option("--ip6", help="IPv6 address on the first network (a dual-stack one).")
@click.option("--network-alias", "aliases", multiple=True, help="Network-scoped alias on the first network.")
@click.option("--gw-priority", type=int, default=0, help="Gateway priority of the first network (highest wins).")
@click.option("-p", "--publish", multiple=True, help="Publish a port: [ip:][host:]guest[/udp], ranges allowed.")
@click.option("-e", "--env", multiple=True, help="Set environment variables (K=V).")
@click.option("-l", "--label", multiple=True, help="Set metadata (k=v).")
@click.option("--hostname", help="Workload host name (default: its name).")
@click.option("--domainname", default=None, help="Workload NIS domain name.")
@click.option("--dns", multiple=True, help="DNS server the gateway forwards this workload's outside names to.")
@click.option("--dns-search", multiple=True, help="DNS search domain (default: the host's; `.` for none).")
@click.option("--dns-option", multiple=True, help="resolv.conf option (default: the host's).")
@click.option("--add-host", multiple=True, help="Add a host-to-IP mapping (host:ip, or host:host-gateway).")
@click.option("--runtime", type=click.Choice(["sandbox", "vm"]), default="sandbox", show_default=True)
@click.option("--cpus", type=float, default=None, help="CPUs: a sandbox's CPU limit, a VM's vCPUs (default 1).")
@click.option("-m", "--memory", default=None, help="Memory limit, e.g. 256m or 1g (a VM's memory, default 256m).")
@click.option("--pids-limit", type=int, default=None, help="Limit the number of tasks (-1: no limit).")
@click.option("--privileged", is_flag=True, help="Turn confinement off (every capability and device, no seccomp).")
@click.option("--cap-add", multiple=True, help="Add a Linux capability (or ALL).")
@click.option("--cap-drop", multiple=True, help="Drop a Linux capability (or ALL).")
@click.option("--security-opt", multiple=True,
              help="seccomp=unconfined|PROFILE.json, no-new-privileges[=false], systempaths=unconfined.")  # fmt: skip
@click.option("--read-only", is_flag=True, help="Mount the workload's root read-only.")
@click.option("--tmpfs", multiple=True, help="Mount a tmpfs: PATH[:OPTIONS].")
@click.option("-v", "--volume", multiple=True, help="Bind a host directory: /HOST:/PATH[:ro|rw,PROPAGATION].")
@click.option("--mount", "mounts", multiple=True,
              help="type=bind,source=/HOST,target=/PATH[,readonly] or type=tmpfs,target=/PATH[,tmpfs-size=..].")  # fmt: skip
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the workload when it exits.")
@click.option("--restart", default="no",
              help="Restart policy: no, always, unless-stopped, on-failure[:max-retries].")  # fmt: skip
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (and attached, without -d).")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-P", "--publish-all", is_flag=True, help="Publish every exposed port on a free host port.")
@click.option("--expose", multiple=True, help="Expose a port (or a range) without publishing it.")
@click.option("--entrypoint", default=None, help="Overwrite the image's entrypoint.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the workload.")
@click.option("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("--stop-signal", default=None, help="Signal to stop the workload (default: the image's, or SIGTERM).")
@click.option("--pull", "pull_policy", type=click.Choice(["missing", "always", "never"]), default="missing",
              show_default=True, help="Pull the image before running.")  # fmt: skip
@click.option("--platform", default=None, help="Platform to pull for (os[/arch[/variant]]).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, detach: bool, name: str | None, networks: tuple[str, ...], ip: str | None,
        ip6: str | None, aliases: tuple[str, ...], publish: tuple[str, ...], env: tuple[str, ...], label: tuple[str, ...],
        hostname: str | None, domainname: str | None, dns: tuple[str, ...], dns_search: tuple[str, ...],
        dns_option: tuple[str, ...], add_host: tuple[str, ...], runtime: str, cpus: float | None, memory: str | None,
        pids_limit: int | None, privileged: bool, cap_add: tuple[str, ...], cap_drop: tuple[str, ...],
        security_opt: tuple[str, ...], read_only: bool, tmpfs: tuple[str, ...], volume: tuple[str, ...],
        mounts: tuple[str, ...], auto_remove: bool, restart: str,
        gw_priority: int, interactive: bool, tty: bool, publish_all: bool, expose: tuple[str, ...], entrypoint: str | None,
        workdir: str | None, user: str | None, stop_signal: str | None, pull_policy: str, platform: str | None,
        image: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Create and start a workload (pulling its image first when it is missing)."""
    specs: list[Any] = []
    exposed: dict[str, Any] = {}
    if publish or expose:  # hypr.ports (and the models it imports) only when ports are given: start-up time
        from hypr.ports import parse_publish

        try:
            specs = [spec for item in publish for spec in parse_publish(item)]
            exposed = {f"{s.guest_port}/{s.protocol}": {} for item in expose for s in parse_publish(item)}
        except HyprError as exc:
            click.echo(f"hypr: {exc.message}\n\nRun 'hypr run --help' for more information", err=True)
            ctx.exit(RUN_FAILED)  # the docker CLI's words and code for a -p it cannot read
    body = run_body(image, command, networks, ip, aliases, specs, env, label, hostname, runtime, restart)
    if gw_priority:
        first = next(iter(body["NetworkingConfig"]["EndpointsConfig"].values()))
        first["GwPriority"] = gw_priority
    if ip6:
        first = next(iter(body["NetworkingConfig"]["EndpointsConfig"].values()))
        first.setdefault("IPAMConfig", {})["IPv6Address"] = ip6
    if cpus:
        body["HostConfig"]["NanoCpus"] = int(cpus * 1e9)
    if memory:
        body["HostConfig"]["Memory"] = parse_bytes(memory)
    body["HostConfig"]["PublishAllPorts"] = publish_all
    body["HostConfig"].update(confinement_fields(pids_limit, privileged, cap_add, cap_drop, security_opt, read_only,
                                                 tmpfs, volume, mounts))  # fmt: skip
    for key, values in (("Dns", dns), ("DnsSearch", dns_search), ("DnsOptions", dns_option), ("ExtraHosts", add_host)):
        if values:
            body["HostConfig"][key] = list(values)
    if domainname:
        body["Domainname"] = domainname
    if exposed:
        body["ExposedPorts"] = exposed
    if entrypoint is not None:
        body["Entrypoint"] = [entrypoint] if entrypoint else [""]
    for key, value in (("WorkingDir", workdir), ("User", user), ("StopSignal", stop_signal)):
        if value:
            body[key] = value
    body["HostConfig"]["AutoRemove"] = auto_remove
    body.update({"Tty": tty, "OpenStdin": interactive, "StdinOnce": interactive and not detach,
                 "AttachStdin": interactive and not detach, "AttachStdout": not detach, "AttachStderr": not detach})  # fmt: skip
    client = client_of(ctx)
    try:
        workload_id = create_pulling(client, body, name, pull_policy, platform)
    except HyprError as exc:
        if isinstance(exc, Unavailable):
            raise
        _refused(ctx, exc.message, RUN_FAILED)
    if detach:
        _start(ctx, client, workload_id, auto_remove)
        click.echo(workload_id)
        return
    # As the docker CLI: attach and wait first, then start, so that no output and no exit is missed.
    ctx.exit(foreground(ctx, client, workload_id, interactive=interactive, tty=tty, auto_remove=auto_remove))


def _start(ctx: click.Context, client: Client, workload_id: str, auto_remove: bool) -> None:
    try:
        client.start(workload_id)
    except HyprError as exc:
        if auto_remove:
            with contextlib.suppress(HyprError):
                client.remove(workload_id, force=True)
        if isinstance(exc, Unavailable):
            raise
        _refused(ctx, exc.message, start_failure_code(exc.message) or RUN_FAILED)


def _refused(ctx: click.Context, message: str, code: int) -> NoReturn:
    """`docker run`'s way out when the daemon refuses: its message, and 125 (127 or 126 when the command itself
    cannot be found or run)."""
    click.echo(f"hypr: Error response from daemon: {message}", err=True)
    ctx.exit(code)


def foreground(ctx: click.Context, client: Client, workload_id: str, *, interactive: bool, tty: bool,
               auto_remove: bool) -> int:  # fmt: skip
    """Attach (stdin too with -i), wait for the exit (its removal with --rm), start; the workload's exit code."""
    import json

    from hypr import stream_client

    params = {"stream": "1", "stdout": "1", "stderr": "1", "stdin": "1" if interactive else "0"}
    path = f"/containers/{stream_client.quote(workload_id)}"
    attached = stream_client.request(client.socket, "POST", f"{path}/attach", params=params, upgrade=True)
    waited = stream_client.request(client.socket, "POST", f"{path}/wait",
                                   params={"condition": "removed" if auto_remove else "next-exit"})  # fmt: skip
    try:
        _start(ctx, client, workload_id, auto_remove)
        if tty:
            stream_client.on_resize(lambda rows, cols: client.request(
                "POST", f"{path}/resize", params={"h": str(rows), "w": str(cols)}))  # fmt: skip
        with stream_client.raw_terminal(tty and interactive):
            stream_client.pump(attached.sock, attached.rest, tty, sys.stdin.buffer if interactive else None)
        result = json.loads(b"".join(stream_client.body(waited)) or b"{}")
        return int(result.get("StatusCode", 0))
    finally:
        attached.close()
        waited.close()


def confinement_fields(pids_limit: int | None, privileged: bool, cap_add: Sequence[str], cap_drop: Sequence[str],
                       security_opt: Sequence[str], read_only: bool, tmpfs: Sequence[str], volume: Sequence[str],
                       mounts: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """The docker CLI's HostConfig for these flags (only the ones given: the daemon keeps Docker's defaults)."""
    fields: dict[str, Any] = {}
    if pids_limit is not None:
        fields["PidsLimit"] = pids_limit
    if privileged:
        fields["Privileged"] = True
    if read_only:
        fields["ReadonlyRootfs"] = True
    for key, values in (("CapAdd", cap_add), ("CapDrop", cap_drop), ("Binds", volume)):
        if values:
            fields[key] = list(values)
    if security_opt:
        fields["SecurityOpt"] = [security_option(o) for o in security_opt]
    if tmpfs:
        fields["Tmpfs"] = {path: options for path, _, options in (t.partition(":") for t in tmpfs)}
    if mounts:
        fields["Mounts"] = [parse_mount(m) for m in mounts]
    return fields


def security_option(option: str) -> str:
    """As the docker CLI: `seccomp=FILE` sends the profile's content; `unconfined` is sent as it is."""
    key, sep, value = option.partition("=")
    if key != "seccomp" or not sep or value == "unconfined":
        return option
    try:
        with open(value) as profile:
            return "seccomp=" + profile.read()
    except OSError as exc:
        message = f"opening seccomp profile ({value}) failed: {exc.strerror}"
        raise click.BadParameter(message, param_hint="--security-opt") from None


_MOUNT_KEYS = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}


def parse_mount(text: str) -> dict[str, Any]:
    """The docker CLI's `--mount` CSV: type, source/src, target/dst/destination, readonly/ro, bind-propagation,
    bind-nonrecursive, tmpfs-size, tmpfs-mode."""
    mount: dict[str, Any] = {"Type": "volume"}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = _MOUNT_KEYS.get(key.strip().lower(), key.strip().lower())
        flag = value.lower() in ("", "1", "true") if key in ("readonly", "bind-nonrecursive") else None
        if key in ("readonly", "bind-nonrecursive") and value.lower() not in ("", "0", "1", "true", "false"):
            raise click.BadParameter(f"invalid value for {key}: {value!r}", param_hint="--mount")
        if key == "type":
            mount["Type"] = value
        elif key == "source":
            mount["Source"] = value
        elif key == "target":
            mount["Target"] = value
        elif key == "readonly":
            mount["ReadOnly"] = flag
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "bind-nonrecursive":
            mount.setdefault("BindOptions", {})["NonRecursive"] = flag
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            try:
                mount.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
            except ValueError:
                raise click.BadParameter(f"invalid tmpfs-mode {value!r}", param_hint="--mount") from None
        else:
            raise click.BadParameter(f"unexpected key '{key}' in '{item}'", param_hint="--mount")
        if not sep and key not in ("readonly", "bind-nonrecursive"):
            raise click.BadParameter(f"invalid field '{item}' must be a key=value pair", param_hint="--mount")
    return mount


def start_failure_code(message: str) -> int | None:
    """The docker CLI's exit codes for a command that could not start: 127 not found, 126 not executable (no
    permission, or a directory)."""
    if "executable file not found" in message or "no such file or directory" in message.lower():
        return 127
    if "permission denied" in message.lower() or "is a directory" in message:
        return 126
    return None


def create_pulling(client: Client, body: dict[str, Any], name: str | None, policy: str, platform: str | None) -> str:
    """docker run's order: create; if the image is missing (404 `No such image`), pull it to stderr and create
    again. `--pull always` pulls first; `never` only creates."""
    image = str(body["Image"])
    if policy == "always" and not _builtin(image):
        _pull_to_stderr(client, image, platform)
    try:
        return client.create_container(body, name, platform)
    except NotFound as exc:
        if policy == "never" or _builtin(image) or not exc.message.startswith("No such image"):
            raise
    click.echo(f"Unable to find image '{_shown(image)}' locally", err=True)
    _pull_to_stderr(client, image, platform)
    return client.create_container(body, name, platform)


def _builtin(image: str) -> bool:
    """An image that is never pulled: hypr's own (`host`, `busybox`) or a root filesystem directory."""
    from hypr.models import BUILTIN_IMAGES  # only when a pull is in question: the models cost start-up time

    return image in BUILTIN_IMAGES or image.startswith("/")


def _shown(image: str) -> str:
    """As docker shows a name it is about to pull: `nginx` -> `nginx:latest`."""
    from hypr.images.reference import parse  # only on this path: the CLI imports little at start

    try:
        ref = parse(image)
    except HyprError:
        return image
    return f"{ref.familiar_name}@{ref.digest}" if ref.digest else ref.tagged


def _pull_to_stderr(client: Client, image: str, platform: str | None) -> None:
    for message in client.pull(image, platform=platform):
        status = str(message.get("status", ""))
        click.echo(f"{message['id']}: {status}" if message.get("id") else status, err=True)


def run_body(image: str, command: Sequence[str], networks: Sequence[str], ip: str | None, aliases: Sequence[str],
             specs: Sequence[Any], env: Sequence[str], label: Sequence[str], hostname: str | None, runtime: str,
             restart: str) -> dict[str, Any]:  # fmt: skip
    """Docker's container-create body, as the docker CLI builds it (API >= 1.44: every network in EndpointsConfig).
    `networks`: `--network` values, names or Docker's long syntax (`network_attachment`); `ip` and `aliases` go to
    the first."""
    endpoints: dict[str, Any] = {}
    for index, value in enumerate(networks or ["bridge"]):
        network, config = network_attachment(value)
        if index == 0 and ip:
            config.setdefault("IPAMConfig", {})["IPv4Address"] = ip
        if index == 0 and aliases:
            config["Aliases"] = [*config.get("Aliases", ()), *aliases]
        endpoints[network] = config
    return {
        "Image": image,
        "Cmd": list(command),
        "Env": list(env),
        "Labels": parse_pairs("label", label, allow_empty=True),
        "Hostname": hostname or "",
        "HostConfig": {
            "NetworkMode": next(iter(endpoints)),
            "PortBindings": _bindings(specs),
            "Runtime": runtime,
            "RestartPolicy": restart_policy(restart),
        },
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }


def restart_policy(value: str) -> dict[str, Any]:
    """`--restart NAME[:MAX-RETRIES]` -> Docker's RestartPolicy, read as the docker CLI reads it (opts.ParseRestartPolicy,
    with its messages); the daemon judges the name and the count."""
    name, sep, count = value.partition(":")
    if sep and not name:
        raise click.BadParameter(
            "invalid restart policy format: no policy provided before colon", param_hint="--restart"
        )
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise click.BadParameter(
            "invalid restart policy format: maximum retry count must be an integer", param_hint="--restart"
        ) from None
    return {"Name": name, "MaximumRetryCount": retries}


RUN_FAILED = 125  # docker run's exit code when the daemon refuses (the workload's own code otherwise)
_ENDPOINT_KEYS = ("name", "alias", "ip", "ip6", "mac-address", "link-local-ip", "driver-opt", "gw-priority")


def network_attachment(value: str) -> tuple[str, dict[str, Any]]:
    """One `--network` value -> (network, EndpointsConfig entry). A plain name, or the docker CLI's long syntax
    `name=NET[,alias=A][,ip=IP][,ip6=IP][,mac-address=M][,link-local-ip=IP][,driver-opt=K=V][,gw-priority=N]`
    (comma-separated fields, repeatable alias, link-local-ip and driver-opt), with Docker's messages for a field
    without `=`, an unknown key, a priority that is no integer and a missing name."""
    import csv

    if not re.search(r"\w+=\w+", value):
        return value, {}
    fields = next(csv.reader([value]))
    config: dict[str, Any] = {}
    name = ""
    for item in fields:
        key, eq, val = item.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not eq or not key:
            raise click.BadParameter(f"invalid field {item}", param_hint="--network")
        if key not in _ENDPOINT_KEYS:
            raise click.BadParameter(f"invalid field key {key}", param_hint="--network")
        if key == "name":
            name = val
        elif key == "alias":
            config.setdefault("Aliases", []).append(val)
        elif key in ("ip", "ip6"):
            config.setdefault("IPAMConfig", {})["IPv4Address" if key == "ip" else "IPv6Address"] = val
        elif key == "link-local-ip":
            config.setdefault("IPAMConfig", {}).setdefault("LinkLocalIPs", []).append(val)
        elif key == "mac-address":
            config["MacAddress"] = val
        elif key == "driver-opt":
            opt, _, opt_value = val.partition("=")
            config.setdefault("DriverOpts", {})[opt.strip()] = opt_value.strip()
        else:
            try:
                config["GwPriority"] = int(val)
            except ValueError:
                raise click.BadParameter(f"invalid gw-priority: {val!r}", param_hint="--network") from None
    if not name:
        raise click.BadParameter("network name/id is not specified", param_hint="--network")
    return name, config


def _bindings(specs: Sequence[Any]) -> dict[str, Any]:
    if not specs:
        return {}
    from hypr.ports import to_bindings

    return to_bindings(specs)


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: `512m`, `1g`, `1048576`."""
    units = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    number, unit = (text[:-1], text[-1].lower()) if text[-1:].isalpha() else (text, "b")
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"invalid size: {text!r}", param_hint="--memory")
    return int(number) * units[unit]


def ports_text(container: dict[str, Any]) -> str:
    return ", ".join(
        f"{p['IP']}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
        for p in sorted(container["Ports"], key=lambda p: (p["PrivatePort"], p["Type"], p["IP"]))
    )


def ip_text(container: dict[str, Any]) -> str:
    return ",".join(n["IPAddress"] for n in container["NetworkSettings"]["Networks"].values())


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all workloads (default shows just running).")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (name=, id=, status=, label=, network=).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List workloads."""
    found = client_of(ctx).containers(all=all_, filters=parse_filters(filters))
    if quiet:
        for c in found:
            click.echo(short_id(c["Id"], no_trunc))
        return
    rows = [
        {"ID": short_id(c["Id"], no_trunc), "NAME": c["Names"][0].lstrip("/"), "IMAGE": c["Image"],
         "STATUS": c["Status"], "PORTS": ports_text(c), "IP": ip_text(c)}
        for c in found
    ]  # fmt: skip
    if fmt == "json":
        echo_json_lines([{k.capitalize() if k != "ID" else k: v for k, v in r.items()} for r in rows])
        return
    headers = ("ID", "NAME", "IMAGE", "STATUS", "PORTS", "IP")
    click.echo(table(headers, [tuple(r[h] for h in headers) for r in rows]))


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables (K=V).")
@click.option("-w", "--workdir", help="Working directory inside the workload.")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("--privileged", is_flag=True, help="Give the command every capability.")
@click.argument("name", shell_complete=workload_names)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, detach: bool, interactive: bool, tty: bool, env: tuple[str, ...], workdir: str | None,
          user: str | None, privileged: bool, name: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Run a command in a running workload; its exit code becomes ours (Docker's exec API)."""
    from hypr import stream_client

    argv = list(command[1:] if command and command[0] == "--" else command)
    if not argv:
        raise click.UsageError("exec needs a command")
    client = client_of(ctx)
    body = {"Cmd": argv, "Env": list(env), "WorkingDir": workdir or "", "User": user or "", "Privileged": privileged,
            "Tty": tty, "AttachStdin": interactive and not detach, "AttachStdout": not detach,
            "AttachStderr": not detach}  # fmt: skip
    size = stream_client.terminal_size() if tty else None
    if size is not None:
        body["ConsoleSize"] = list(size)
    exec_id = str(client.request("POST", f"/containers/{stream_client.quote(name)}/exec", body=body)["Id"])
    start = {"Detach": detach, "Tty": tty}
    if detach:
        client.request("POST", f"/exec/{exec_id}/start", body=start)
        return
    started = stream_client.request(client.socket, "POST", f"/exec/{exec_id}/start", body=start, upgrade=True)
    try:
        if tty:
            stream_client.on_resize(lambda rows, cols: client.request(
                "POST", f"/exec/{exec_id}/resize", params={"h": str(rows), "w": str(cols)}))  # fmt: skip
        with stream_client.raw_terminal(tty and interactive):
            stream_client.pump(started.sock, started.rest, tty, sys.stdin.buffer if interactive else None)
    finally:
        started.close()
    ctx.exit(int(client.request("GET", f"/exec/{exec_id}/json").get("ExitCode") or 0))


@click.command("stop")
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing it.")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def stop(ctx: click.Context, timeout: float | None, refs: tuple[str, ...]) -> None:
    """Stop one or more running workloads."""
    for_each(ctx, refs, lambda ref: client_of(ctx).stop(ref, timeout))


@click.command("start")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def start(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Start one or more stopped workloads."""
    for_each(ctx, refs, client_of(ctx).start)


@click.command("restart")
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing it.")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def restart(ctx: click.Context, timeout: float | None, refs: tuple[str, ...]) -> None:
    """Restart one or more workloads."""
    for_each(ctx, refs, lambda ref: client_of(ctx).restart(ref, timeout))


@click.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send.")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def kill(ctx: click.Context, sig: str, refs: tuple[str, ...]) -> None:
    """Kill one or more running workloads."""
    for_each(ctx, refs, lambda ref: client_of(ctx).kill(ref, sig))


@click.command("wait")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def wait(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Block until one or more workloads stop, then print their exit codes (Docker's `wait`: one line each)."""

    def show(ref: str) -> None:
        click.echo(client_of(ctx).wait(ref))

    for_each(ctx, refs, show, echo=False)


@click.command("pause")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def pause(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Pause every process of one or more workloads (crun's cgroup freezer; a VM's vCPUs)."""
    for_each(ctx, refs, lambda ref: client_of(ctx).pause(ref))


@click.command("unpause")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def unpause(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Resume one or more paused workloads."""
    for_each(ctx, refs, lambda ref: client_of(ctx).pause(ref, paused=False))


@click.command("top", context_settings={"ignore_unknown_options": True})
@click.argument("ref", shell_complete=workload_names)
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, ref: str, ps_args: tuple[str, ...]) -> None:
    """Show a workload's processes (as `ps`, with its options: `hypr top web -o pid,args`)."""
    found = client_of(ctx).top(ref, " ".join(ps_args))
    click.echo(table(found["Titles"], found["Processes"]))


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill a running workload first.")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def rm(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more workloads."""
    for_each(ctx, refs, lambda ref: client_of(ctx).remove(ref, force=force))


@click.command("update")
@click.option("--restart", default=None, help="Restart policy: no, always, unless-stopped, on-failure[:N].")
@click.option("--cpus", type=float, default=None, help="CPU limit (refused by hypr: fixed at create).")
@click.option("-m", "--memory", default=None, help="Memory limit (refused by hypr: fixed at create).")
@click.option("--pids-limit", type=int, default=None, help="Tasks limit (refused by hypr: fixed at create).")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def update(ctx: click.Context, restart: str | None, cpus: float | None, memory: str | None, pids_limit: int | None,
           refs: tuple[str, ...]) -> None:  # fmt: skip
    """Update the restart policy of one or more workloads (Docker's update; the daemon refuses the resource
    limits by name: hypr fixes them when a workload is made)."""
    body: dict[str, Any] = {}
    if restart is not None:
        body["RestartPolicy"] = restart_policy(restart)
    if cpus is not None:
        body["NanoCpus"] = int(cpus * 1e9)
    if memory is not None:
        body["Memory"] = parse_bytes(memory)
    if pids_limit is not None:
        body["PidsLimit"] = pids_limit
    if not body:  # the docker CLI's words
        raise click.UsageError("you must provide one or more flags when using this command")

    def one(ref: str) -> None:
        for warning in client_of(ctx).update(ref, body):
            click.echo(f"WARNING: {warning}", err=True)

    for_each(ctx, refs, one)


@click.command("rename")
@click.argument("ref", shell_complete=workload_names)
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, ref: str, new_name: str) -> None:
    """Rename a workload; its DNS names change at once."""
    client_of(ctx).rename(ref, new_name)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", default="", help="Since a timestamp (RFC 3339 or Unix) or a duration (e.g. 42m).")
@click.option("--until", default="", help="Until a timestamp (RFC 3339 or Unix) or a duration (e.g. 42m).")
@click.argument("ref", shell_complete=workload_names)
@click.pass_context
def logs(ctx: click.Context, follow: bool, tail: str, timestamps: bool, since: str, until: str, ref: str) -> None:
    """Show a workload's output: its stdout on ours, its stderr on ours (as docker logs)."""
    from hypr import stream_client

    params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0", "tail": tail,
              "timestamps": "1" if timestamps else "0", "since": unix_time(since), "until": unix_time(until)}  # fmt: skip
    for stream, data in stream_client.logs(client_of(ctx).socket, ref, params):
        out = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        out.write(data)
        out.flush()


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def unix_time(text: str, now: float | None = None) -> str:
    """The docker CLI's --since/--until: a Unix time, an RFC 3339 date, or a Go duration before now ("1h30m")."""
    import re
    import time
    from datetime import UTC, datetime

    if not text:
        return ""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return text
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if parts and "".join(n + u for n, u in parts) == text:
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        return f"{(time.time() if now is None else now) - seconds:.9f}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"invalid time {text!r}: a Unix time, an RFC 3339 date or a duration") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.timestamp():.9f}"


@click.command("inspect")
@click.argument("refs", nargs=-1, required=True, shell_complete=workload_names)
@click.pass_context
def inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more workloads."""
    inspect_each(ctx, refs, client_of(ctx).container)


@click.command("port")
@click.argument("ref", shell_complete=workload_names)
@click.argument("port", required=False)
@click.pass_context
def port(ctx: click.Context, ref: str, port: str | None) -> None:
    """List port mappings of a workload (or the mapping of one PORT[/PROTO])."""
    bindings = client_of(ctx).container(ref)["NetworkSettings"]["Ports"] or {}
    wanted = None if port is None else (port if "/" in port else f"{port}/tcp")
    if wanted is not None and wanted not in bindings:
        raise click.ClickException(f"No public port '{wanted}' published for {ref}")
    for key in sorted(bindings, key=lambda k: (int(k.split("/")[0]), k)):
        if wanted is not None and key != wanted:
            continue
        for b in bindings[key] or []:
            address = f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}"
            click.echo(address if wanted else f"{key} -> {address}")


COMMANDS = (
    port, run, ps, exec_, stop, start, restart, kill, wait, pause, unpause, top, rm, rename, update, logs, inspect
)  # fmt: skip
