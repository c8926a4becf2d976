"""The per-workload files bind-mounted over /etc/hosts, /etc/resolv.conf and /etc/hostname (as Docker does):
rendered purely, written in place.

Written in place (not renamed) because a bind mount pins the inode: a running workload sees the new content.
"""

from __future__ import annotations

from pathlib import Path

from hypr.runtime.base import LaunchSpec

HOSTS = "hosts"
RESOLV = "resolv.conf"
HOSTNAME = "hostname"

_HOSTS_HEAD = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def render_hosts(spec: LaunchSpec) -> str:
    """Docker's layout: localhost lines, --add-host entries, then the workload's own addresses and names."""
    names = f"{spec.hostname}.{spec.domainname}\t{spec.hostname}" if spec.domainname else spec.hostname
    lines = [f"{ip}\t{name}\n" for name, ip in spec.hosts]
    lines += [f"{address}\t{names}\n" for att in spec.attachments if (address := att.ip or att.ip6)]
    return _HOSTS_HEAD + "".join(dict.fromkeys(lines))  # its name is its hostname unless --hostname: one line


def render_resolv(spec: LaunchSpec) -> str:
    """The gateway is the only nameserver (it answers for peers and `.hypr`, and forwards the rest: to the
    workload's --dns servers if it has some); search and options are the host's unless the workload has its own,
    as Docker does. ndots:0 is added when no ndots is given, so a bare peer name is asked as it is first."""
    # Without a nameserver the resolver falls back to 127.0.0.1 in the sandbox: refused at once, no stall.
    server = f"nameserver {spec.nameserver}\n" if spec.nameserver is not None else ""
    search = f"search {' '.join(spec.search)}\n" if spec.search else ""
    options = list(spec.dns_options)
    if not any(o.startswith("ndots:") for o in options):
        options.insert(0, "ndots:0")
    return server + search + f"options {' '.join(options)}\n"


def host_resolver(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(search domains, options) of a resolv.conf; the last `search`/`domain` line wins, as in glibc."""
    search: tuple[str, ...] = ()
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] in ("search", "domain"):
            search = tuple(words[1:])
        elif words[0] == "options":
            options += words[1:]
    return search, tuple(options)


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_all(spec: LaunchSpec) -> None:
    write_in_place(spec.state_dir / HOSTS, render_hosts(spec))
    write_in_place(spec.state_dir / RESOLV, render_resolv(spec) if spec.resolv_conf is None else spec.resolv_conf)
    write_in_place(spec.state_dir / HOSTNAME, spec.hostname + "\n")
