"""Docker's `--user` / image `User`, resolved against a root filesystem's /etc/passwd and /etc/group. Pure apart
from reading those two files.

Docker's rules (moby `pkg/user`, runc `libcontainer/user`): "" is root; "name" or "uid" takes the group and home
from /etc/passwd (a numeric uid that passwd does not list gets gid 0 and home "/"); "user:group" with a name or a
number on either side; a group name must exist in /etc/group. Supplementary groups are the groups that list the
user's name in /etc/group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypr.errors import InvalidParameter


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, without `gid`
    home: str


ROOT = Credentials(0, 0, (), "/root")


def _entries(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#") and ":" in line]


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2**32 - 1 else None


def resolve_user(rootfs: Path | None, user: str) -> Credentials:
    """`rootfs` None means the host's own files. Raises InvalidParameter (Docker: `unable to find user x: no
    matching entries in passwd file`)."""
    if not user:
        return ROOT
    etc = (rootfs or Path("/")) / "etc"
    name, _, group = user.partition(":")
    passwd = [e for e in _entries(etc / "passwd") if len(e) >= 7]
    uid = _number(name)
    entry = next((e for e in passwd if (e[0] == name if uid is None else e[2] == name)), None)
    if entry is None and uid is None:
        raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
    if entry is not None:
        uid, gid, home, login = int(entry[2]), _number(entry[3]) or 0, entry[5] or "/", entry[0]
    else:
        assert uid is not None
        gid, home, login = 0, "/", ""
    groups = _entries(etc / "group")
    if group:
        number = _number(group)
        match = next((g for g in groups if len(g) >= 3 and (g[0] == group if number is None else g[2] == group)), None)
        if match is None and number is None:
            raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
        gid = int(match[2]) if match is not None and match[2].isdigit() else number or 0
    extra = sorted(
        {int(g[2]) for g in groups if len(g) >= 4 and g[2].isdigit() and login and login in g[3].split(",")} - {gid}
    )
    return Credentials(uid, gid, tuple(extra), home)
