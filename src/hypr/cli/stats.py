"""`hypr stats`: the docker CLI's table of live resource use, from the daemon's stats route (one sample each,
paired by the daemon with one taken a second earlier)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from hypr.cli.context import client_of, workload_names
from hypr.cli.output import short_id, table
from hypr.errors import HyprError, Unavailable

HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _size(value: float, base: float, units: tuple[str, ...], precision: int) -> str:
    """go-units' CustomSize: `%.<precision>g` of the value in the largest unit it reaches."""
    i = 0
    while value >= base and i < len(units) - 1:
        value /= base
        i += 1
    return f"{value:.{precision}g}{units[i]}"


def human_size(value: float) -> str:
    """go-units' HumanSizeWithPrecision(value, 3), as docker stats shows NET I/O and BLOCK I/O: `1.2kB`."""
    return _size(value, 1000.0, _DECIMAL, 3)


def bytes_size(value: float) -> str:
    """go-units' BytesSize, as docker stats shows memory: `1.5MiB`."""
    return _size(value, 1024.0, _BINARY, 4)


def row(sample: Mapping[str, Any], full_id: bool = False) -> tuple[str, ...]:
    """One sample (Docker's stats JSON) -> the docker CLI's columns, computed as its formatter does: CPU % the
    share of the host's CPU time since `precpu_stats` times the online CPUs; memory without the inactive page
    cache; NET I/O summed over interfaces; BLOCK I/O from io_service_bytes_recursive. Pure."""
    cpu, pre = sample.get("cpu_stats") or {}, sample.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
    cpu_percent = cpu_delta / system_delta * online * 100 if cpu_delta > 0 and system_delta > 0 else 0.0
    memory = sample.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    usage = memory.get("usage", 0)
    usage = usage - inactive if inactive < usage else usage
    limit = memory.get("limit", 0)
    networks = (sample.get("networks") or {}).values()
    blkio = (sample.get("blkio_stats") or {}).get("io_service_bytes_recursive") or ()
    read = sum(e.get("value", 0) for e in blkio if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in blkio if str(e.get("op", "")).lower() == "write")
    return (
        short_id(sample.get("id", ""), full_id), str(sample.get("name", "")).lstrip("/"), f"{cpu_percent:.2f}%",
        f"{bytes_size(usage)} / {bytes_size(limit)}", f"{usage / limit * 100 if limit else 0.0:.2f}%",
        f"{human_size(sum(n.get('rx_bytes', 0) for n in networks))} / "
        f"{human_size(sum(n.get('tx_bytes', 0) for n in networks))}",
        f"{human_size(read)} / {human_size(write)}", str((sample.get("pids_stats") or {}).get("current", 0)),
    )  # fmt: skip


@click.command("stats")
@click.option("-a", "--all", "all_", is_flag=True, help="Show every workload (default: the running ones).")
@click.option("--no-stream", is_flag=True, help="Print one table and exit (default: refresh every second).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the IDs.")
@click.argument("refs", nargs=-1, shell_complete=workload_names)
@click.pass_context
def stats(ctx: click.Context, all_: bool, no_stream: bool, no_trunc: bool, refs: tuple[str, ...]) -> None:
    """Show live resource use of workloads: CPU, memory, network and block I/O, processes (Docker's stats)."""
    client = client_of(ctx)
    names = list(refs) or [c["Id"] for c in client.containers(all=all_)]
    while True:
        with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:  # a second's sample each
            samples = list(pool.map(lambda ref: _sample(client, ref), names))
        rows = [row(s, no_trunc) for s in samples if s]
        if not no_stream:
            click.echo("\033[2J\033[H", nl=False)  # the docker CLI clears the screen for each table
        click.echo(table(HEADERS, rows))
        if len(rows) < len(names):
            ctx.exit(1)
        if no_stream:
            return
        time.sleep(0.1)  # the daemon's sample already took a second


def _sample(client: Any, ref: str) -> dict[str, Any]:
    try:
        return dict(client.stats(ref))
    except Unavailable:
        raise
    except HyprError as exc:
        click.echo(f"Error response from daemon: {exc.message}", err=True)
        return {}


COMMANDS = (stats,)
