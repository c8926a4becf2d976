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
    lines = [f"{ip}\t{name}\n" for name, ip in spec.hosts]
    lines += [f"{att.ip}\t{spec.hostname}\n" for att in spec.attachments]
    return _HOSTS_HEAD + "".join(lines)


def render_resolv(spec: LaunchSpec) -> str:
    # Without a nameserver the resolver falls back to 127.0.0.1 in the sandbox: refused at once, no stall.
    server = f"nameserver {spec.nameserver}\n" if spec.nameserver is not None else ""
    return server + "options ndots:0\n"


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_all(spec: LaunchSpec) -> None:
    write_in_place(spec.state_dir / HOSTS, render_hosts(spec))
    write_in_place(spec.state_dir / RESOLV, render_resolv(spec))
    write_in_place(spec.state_dir / HOSTNAME, spec.hostname + "\n")
