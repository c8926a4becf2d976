"""`hypr network ...`: the same words, flags and output as `docker network ...`."""

from __future__ import annotations

from typing import Any

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
from hypr.cli.output import echo_json_lines, natural_key, short_id, table


@click.group("network")
def network() -> None:
    """Manage networks."""


class _BoolFlags(click.Command):
    """Docker's boolean flags take a value only as `--flag=value` (`--ipv4=false`, `--ipv6=true`, Go's
    strconv.ParseBool spellings); click's flags take none, so that form becomes `--flag` or `--no-flag`."""

    FLAGS = ("--ipv4", "--ipv6")
    TRUE, FALSE = ("1", "t", "T", "true", "TRUE", "True"), ("0", "f", "F", "false", "FALSE", "False")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [self._flag(arg) for arg in args])

    def _flag(self, arg: str) -> str:
        name, eq, value = arg.partition("=")
        if not eq or name not in self.FLAGS:
            return arg
        if value not in self.TRUE + self.FALSE:
            raise click.BadParameter(f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: parsing '
                                     f'"{value}": invalid syntax')  # fmt: skip
        return name if value in self.TRUE else f"--no-{name[2:]}"


@network.command("create", cls=_BoolFlags)
@click.argument("name")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Driver to manage the network.")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format (one IPv4, one IPv6).")
@click.option("--gateway", multiple=True, help="Gateway for the subnet of its family.")
@click.option("--ip-range", multiple=True, help="Allocate addresses from a sub-range.")
@click.option("--aux-address", multiple=True, help="Auxiliary address the IPAM must not hand out (name=IP).")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option(
    "--ipv6/--no-ipv6", default=False, help="Enable IPv6 networking (dual-stack, or IPv6-only with --ipv4=false)."
)
@click.option("--ipv4/--no-ipv4", default=True, help="Enable IPv4 networking (--ipv4=false: IPv6 only).")
@click.option("--label", multiple=True, help="Set metadata on a network (k=v).")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options (k=v).")
@click.option("--ipam-opt", multiple=True, help="Set IPAM driver specific options (k=v).")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, subnet: tuple[str, ...], gateway: tuple[str, ...],
           ip_range: tuple[str, ...], aux_address: tuple[str, ...], internal: bool, ipv6: bool, ipv4: bool,
           label: tuple[str, ...], opt: tuple[str, ...], ipam_opt: tuple[str, ...]) -> None:  # fmt: skip
    """Create a network."""
    body = {
        "Name": name,
        "Driver": driver,
        "Internal": internal,
        "EnableIPv6": ipv6,
        "IPAM": {
            "Driver": "default",
            "Config": ipam_configs(subnet, gateway, ip_range, aux_address),
            "Options": parse_pairs("ipam-opt", ipam_opt),
        },
        "Options": parse_pairs("opt", opt),
        "Labels": parse_pairs("label", label, allow_empty=True),
    }
    if not ipv4:
        body["EnableIPv4"] = False
    click.echo(client_of(ctx).create_network(body))


def ipam_configs(subnets: tuple[str, ...], gateways: tuple[str, ...], ranges: tuple[str, ...],
                 aux: tuple[str, ...]) -> list[dict[str, Any]]:  # fmt: skip
    """Docker's pairing: each --gateway and --ip-range belongs to the --subnet of its address family (IPv6 has a
    `:`); auxiliary addresses to the IPv4 one."""
    if (gateways or ranges or aux) and not subnets:
        raise click.UsageError("--gateway, --ip-range and --aux-address need --subnet")
    configs: dict[bool, dict[str, Any]] = {}
    for text in subnets:
        if (":" in text) in configs:
            raise click.UsageError("one --subnet per address family")
        configs[":" in text] = {"Subnet": text}
    for key, values in (("Gateway", gateways), ("IPRange", ranges)):
        for text in values:
            config = configs.get(":" in text)
            if config is None or key in config:
                raise click.UsageError(f"--{key.lower()} {text}: no --subnet of its family, or given twice")
            config[key] = text
    if aux:
        if False not in configs:
            raise click.UsageError("--aux-address needs an IPv4 --subnet")
        configs[False]["AuxiliaryAddresses"] = parse_pairs("aux-address", aux)
    return [configs[v6] for v6 in (False, True) if v6 in configs]


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions (k=v).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List networks."""
    found = sorted(client_of(ctx).networks(parse_filters(filters)), key=lambda n: natural_key(n["Name"]))
    if quiet:
        for n in found:
            click.echo(short_id(n["Id"], no_trunc))
    elif fmt == "json":
        echo_json_lines([_ls_json(n, no_trunc) for n in found])
    else:
        rows = [(short_id(n["Id"], no_trunc), n["Name"], n["Driver"], n["Scope"]) for n in found]
        click.echo(table(("NETWORK ID", "NAME", "DRIVER", "SCOPE"), rows))


def _ls_json(n: dict[str, Any], no_trunc: bool) -> dict[str, str]:
    return {
        "CreatedAt": n["Created"],
        "Driver": n["Driver"],
        "ID": short_id(n["Id"], no_trunc),
        "IPv4": str(n.get("EnableIPv4", True)).lower(),
        "IPv6": str(n["EnableIPv6"]).lower(),
        "Internal": str(n["Internal"]).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(n["Labels"].items())),
        "Name": n["Name"],
        "Scope": n["Scope"],
    }


@network.command("inspect")
@click.argument("refs", nargs=-1, required=True, shell_complete=network_names)
@click.pass_context
def inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    inspect_each(ctx, refs, client_of(ctx).network)


@network.command("rm")
@click.argument("refs", nargs=-1, required=True, shell_complete=network_names)
@click.option("-f", "--force", is_flag=True, help="Disconnect workloads and remove the network anyway.")
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more networks."""
    for_each(ctx, refs, lambda ref: client_of(ctx).remove_network(ref, force=force))


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (e.g. until=24h, label=k=v).")
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused custom networks."""
    if not force:
        click.echo("WARNING! This will remove all custom networks not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    deleted = client_of(ctx).prune_networks(parse_filters(filters))
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@network.command("connect")
@click.option("--ip", help="IPv4 address.")
@click.option("--ip6", help="IPv6 address.")
@click.option("--alias", multiple=True, help="Network-scoped alias for the workload.")
@click.option("--gw-priority", type=int, default=0, help="Highest (not internal) network carries the default route.")
@click.argument("network_ref", metavar="NETWORK", shell_complete=network_names)
@click.argument("workload", metavar="WORKLOAD", shell_complete=workload_names)
@click.pass_context
def connect(ctx: click.Context, ip: str | None, ip6: str | None, alias: tuple[str, ...], gw_priority: int,
            network_ref: str, workload: str) -> None:  # fmt: skip
    """Connect a workload to a network (it may be running)."""
    client_of(ctx).connect(network_ref, workload, ip=ip, ip6=ip6, aliases=list(alias), gw_priority=gw_priority)


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the workload to disconnect.")
@click.argument("network_ref", metavar="NETWORK", shell_complete=network_names)
@click.argument("workload", metavar="WORKLOAD", shell_complete=workload_names)
@click.pass_context
def disconnect(ctx: click.Context, force: bool, network_ref: str, workload: str) -> None:
    """Disconnect a workload from a network."""
    client_of(ctx).disconnect(network_ref, workload, force=force)


COMMANDS = (network,)
