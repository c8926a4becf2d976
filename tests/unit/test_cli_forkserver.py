"""The CLI fork server's two ends without a daemon: the request a client sends, taken on by a real forked child;
the exit codes; the module stamps that make a server stale; the socket directory's checks."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hypr.cli import entry, forkserver
from hypr.runtime import _libc


def test_a_child_takes_on_the_clients_directory_umask_environment_argv_and_stdio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/hypr", "ps", "caf\udce9"])  # an argument that is not UTF-8
    monkeypatch.setenv("HYPR_HOST", "unix:///somewhere/hypr.sock")
    monkeypatch.setenv("WITH_EQUALS", "a=b")
    monkeypatch.setenv("TZ", "JST-9")  # this process's C library read its zone before: the child must re-read it
    old = os.umask(0o027)
    try:
        fields = entry.request().split(b"\0")
    finally:
        os.umask(old)
    assert fields[0] == entry.MAGIC
    out_r, out_w = os.pipe()
    with open(os.devnull, "rb") as null_in:
        pid = os.fork()
        if pid == 0:  # the child: as the server's, it takes on the request, then reports what it became
            try:
                os.chdir("/")
                os.close(out_r)
                forkserver.become_client(fields, [null_in.fileno(), out_w, out_w])
                print(json.dumps({
                    "cwd": os.getcwd(), "umask": os.umask(0), "argv": sys.argv, "host": os.environ.get("HYPR_HOST"),
                    "equals": os.environ.get("WITH_EQUALS"), "stdout_tty": sys.stdout.isatty(),
                    "zone": time.strftime("%z", time.localtime(0)),
                }))  # fmt: skip
                sys.stdout.flush()
            finally:
                os._exit(0)
    os.close(out_w)
    with os.fdopen(out_r) as reader:
        report = json.loads(reader.read())
    os.waitpid(pid, 0)
    assert report == {
        "cwd": str(tmp_path), "umask": 0o027, "argv": ["/usr/bin/hypr", "ps", "caf\udce9"],
        "host": "unix:///somewhere/hypr.sock", "equals": "a=b", "stdout_tty": False, "zone": "+0900",
    }  # fmt: skip


@pytest.mark.parametrize("code", [0, 1, 3, 125, 255])
def test_a_clients_exit_code_is_its_childs(code: int) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert entry.exit_code(status) == code


def test_a_module_changed_on_disk_changes_the_stamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stamped_mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("stamped_mod")
    try:
        before = forkserver.module_stamps((str(tmp_path),))
        assert list(before) == [str(tmp_path / "stamped_mod.py")]
        assert forkserver.module_stamps((str(tmp_path),)) == before
        stat = (tmp_path / "stamped_mod.py").stat()
        os.utime(tmp_path / "stamped_mod.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert forkserver.module_stamps((str(tmp_path),)) != before
    finally:
        del sys.modules["stamped_mod"]


def test_the_socket_is_in_a_private_directory_or_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = entry.socket_path()
    assert path is not None and Path(path).parent == tmp_path / "hypr"
    assert (tmp_path / "hypr").stat().st_mode & 0o777 == 0o700  # made private
    (tmp_path / "hypr").chmod(0o755)
    assert entry.socket_path() is None  # open to others: not used
    (tmp_path / "hypr").chmod(0o700)
    (tmp_path / "hypr").rename(tmp_path / "private")
    (tmp_path / "hypr").symlink_to(tmp_path / "private")
    assert entry.socket_path() is None  # a symbolic link (to anywhere): not used
    (tmp_path / "hypr").unlink()
    (tmp_path / "private").rename(tmp_path / "hypr")
    if os.geteuid() == 0:
        (tmp_path / "hypr").chmod(0o700)
        os.chown(tmp_path / "hypr", 65534, 65534)
        assert entry.socket_path() is None  # someone else's: not used


def test_the_key_follows_the_python_settings_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    key = entry.server_key()
    monkeypatch.setenv("HYPR_HOST", "unix:///elsewhere")  # each command gets its own environment: same server
    assert entry.server_key() == key
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")  # decides which code runs: another server
    assert entry.server_key() != key


def in_child(check: Callable[[], bool]) -> bool:
    """`check()` run in a forked child (which may change its own process state)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if check() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1)
    return os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_a_closed_standard_fd_is_seen(fd: int) -> None:
    def closed() -> bool:
        os.close(fd)
        return entry.stdio_open()

    assert entry.stdio_open()
    assert not in_child(closed)


@pytest.mark.skipif(os.geteuid() != 0, reason="changes groups and capabilities")
def test_credentials_tell_groups_capabilities_and_namespaces_apart() -> None:
    mine = forkserver.credentials("self")
    assert mine is not None and forkserver.credentials(os.getpid()) == mine

    def after(change: Callable[[], object]) -> Callable[[], bool]:
        return lambda: (change(), forkserver.credentials("self") == mine)[1]

    assert in_child(after(lambda: None))
    assert not in_child(after(lambda: os.setgroups([65534])))
    assert not in_child(after(lambda: _libc.unshare(_libc.CLONE_NEWNS)))
    assert forkserver.credentials(2**22 + 1) is None  # no such process
