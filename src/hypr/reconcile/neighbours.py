"""Other firewalls on this host that can drop our traffic. hypr never edits them; it says so when they would.

Docker (and firewalld, libvirt) set `policy drop` on forward chains of their own tables. Netfilter runs every base
chain of a hook, and a packet dropped by any of them is gone, whatever our table accepted.
"""

from __future__ import annotations

import logging
import re

from hypr import names
from hypr.reconcile import libnft

log = logging.getLogger(__name__)
_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_CHAIN = re.compile(r"^\s*chain (\S+) \{")


def forward_drop_chains(listing: str) -> list[tuple[str, str]]:
    """(`family name`, chain) of every forward-hook chain with policy drop, ours excepted. Pure: parses the text of
    `nft list chains`."""
    found = []
    table = chain = ""
    for line in listing.splitlines():
        if m := _TABLE.match(line):
            table = f"{m[1]} {m[2]}"
        elif m := _CHAIN.match(line):
            chain = m[1]
        elif "hook forward" in line and "policy drop" in line and table.split()[-1:] != [names.TABLE]:
            found.append((table, chain))
    return found


def warn_about_forward_drops() -> list[tuple[str, str]]:
    try:
        listing = libnft.run("list chains")
    except libnft.NftError as exc:
        log.warning("could not list other nftables chains: %s", exc)
        return []
    found = forward_drop_chains(listing)
    for table, chain in found:
        log.warning(
            "table %s chain %s drops forwarded traffic by default (policy drop): workloads may lose egress and "
            "published ports unless that table accepts traffic of hypr's bridges (see docs/troubleshooting.md)",
            table, chain,
        )  # fmt: skip
    return found
