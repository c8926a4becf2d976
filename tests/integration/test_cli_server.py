"""The CLI fork server (hypr.cli.entry, hypr.cli.forkserver): a command run on it answers exactly as it does
without it (output, errors, exit codes), with its client's environment, directory and stdin; signals reach it;
a client that dies takes its command with it; the server goes when idle and is per network namespace."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypr.cli import entry
from tests.integration.harness import HYPR, Hyprd, cli_servers, in_terminal, stop_cli_servers, wait_until

OFF = {"HYPR_CLI_SERVER": "0"}
SO_SNDBUFFORCE = 32  # Linux; the socket module lacks it


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Path]:
    """A socket directory of the test's own: the servers found there are the test's, stopped at the end."""
    directory = tmp_path / "xdg" / "hypr"
    try:
        yield directory
    finally:
        stop_cli_servers(directory)


def client_env(hyprd: Hyprd, servers: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `hypr` client of the test's daemon, with the test's own server socket directory."""
    return {**hyprd.env, "XDG_RUNTIME_DIR": str(servers.parent), **(extra or {})}


def hypr(hyprd: Hyprd, servers: Path, *argv: str, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = client_env(hyprd, servers, env)
    return subprocess.run([HYPR, "-H", f"unix://{hyprd.socket}", *argv], env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def popen(hyprd: Hyprd, servers: Path, *argv: str, env: dict[str, str] | None = None,
          ignore: tuple[int, ...] = (), wrapper: tuple[str, ...] = ()) -> subprocess.Popen[str]:  # fmt: skip
    """A client started as a shell starts a job: a process group of its own (not orphaned: Ctrl-Z can stop it),
    the signals a terminal sends at their defaults (a test runner in the background has SIGINT and SIGHUP ignored,
    and its children would inherit that), `ignore` ignored; `wrapper`: a command it runs under (setpriv...)."""

    def as_a_job() -> None:
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN if sig in ignore else signal.SIG_DFL)

    full_env = client_env(hyprd, servers, env)
    return subprocess.Popen([*wrapper, HYPR, "-H", f"unix://{hyprd.socket}", *argv], env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
                            preexec_fn=as_a_job)  # fmt: skip


@pytest.fixture
def talker(hyprd: Hyprd) -> None:
    """A workload that prints `tick` five times a second, for commands that follow its logs."""
    hyprd.cli("run", "-d", "--name", "talker", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.2; done")


def follow(hyprd: Hyprd, servers: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """`hypr logs -f talker`, started as a shell starts a job (`popen`), once it follows: its first tick read."""
    client = popen(hyprd, servers, "logs", "-f", "talker", **kwargs)
    assert client.stdout is not None and client.stdout.readline() == "tick\n"
    return client


def started_server(hyprd: Hyprd, servers: Path) -> int:
    hypr(hyprd, servers, "--version")
    wait_until(lambda: len(cli_servers(servers)) == 1 and any(servers.glob("*.sock")), "the CLI fork server")
    return cli_servers(servers)[0]


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def children_faults(server: int) -> int:
    """The page faults of the server's reaped children (cminflt): it grows with every command the server ran."""
    return int(Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[8])


def commands_of(server: int) -> list[int]:
    """The commands the server runs now: its children."""
    return [int(pid) for pid in Path(f"/proc/{server}/task/{server}/children").read_text().split()]


CASES = [
    ("ps", "-q"),
    ("ps", "-a", "--no-trunc", "-q"),
    ("network", "ls"),
    ("inspect", "nosuch"),
    ("rm", "nosuch", "also-missing"),
    ("ps", "--bad-flag"),
    ("network", "create", "n1"),  # exists: Docker's conflict, exit 1
    ("--help",),
    ("run", "--rm", "busybox", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"),
    ("exec", "web", "sh", "-c", "cat /etc/hostname; exit 7"),
    ("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo caf\u00e9 \u2713"),
]


def test_commands_answer_on_the_server_as_without_it(hyprd: Hyprd, servers: Path) -> None:
    hyprd.cli("run", "-d", "--name", "web", "busybox", "sleep", "600")
    hyprd.cli("network", "create", "n1")
    server = started_server(hyprd, servers)
    before = children_faults(server)
    for argv in CASES:
        here, there = hypr(hyprd, servers, *argv, env=OFF), hypr(hyprd, servers, *argv)
        assert (there.returncode, there.stdout, there.stderr) == (here.returncode, here.stdout, here.stderr), argv
    assert cli_servers(servers) == [server] and children_faults(server) > before  # the server ran them


def test_a_command_gets_its_clients_environment_directory_and_stdin(
    hyprd: Hyprd, servers: Path, tmp_path: Path
) -> None:
    started_server(hyprd, servers)
    echoed = hypr(hyprd, servers, "run", "-i", "--rm", "busybox", "cat", stdin="line one\nline two\n")
    assert echoed.stdout == "line one\nline two\n"
    full_env = client_env(hyprd, servers, {"HYPR_HOST": "unix:///nonexistent/h.sock"})
    missing = subprocess.run([HYPR, "ps"], env=full_env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "unix:///nonexistent/h.sock" in missing.stderr
    project = tmp_path / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text("services:\n  app:\n    image: busybox\n    command: sleep 600\n")
    full_env = client_env(hyprd, servers)
    up = subprocess.run([HYPR, "-H", f"unix://{hyprd.socket}", "compose", "up", "-d"], cwd=project, env=full_env,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert hypr(hyprd, servers, "ps", "--format", "json").stdout.count('"proj-app-1"') == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_client_ends_the_command_as_without_the_server(
    hyprd: Hyprd, talker: None, servers: Path, sig: signal.Signals
) -> None:
    server = started_server(hyprd, servers)
    ended = {}
    for label, env in (("here", OFF), ("server", None)):
        client = popen(hyprd, servers, "logs", "-f", "talker", env=env)
        assert client.stdout is not None
        assert client.stdout.readline() == "tick\n"  # following
        if label == "server":
            assert len(commands_of(server)) == 1
        client.send_signal(sig)
        ended[label] = client.wait(timeout=10)
    assert ended["server"] == ended["here"]
    wait_until(lambda: commands_of(server) == [], "the command to end with its client")


def test_a_signal_the_client_ignores_is_not_forwarded(hyprd: Hyprd, talker: None, servers: Path) -> None:
    """`nohup hypr logs -f x &`: SIGHUP (and SIGINT) ignored at start stay ignored, as without the server."""
    server = started_server(hyprd, servers)
    clients = [popen(hyprd, servers, "logs", "-f", "talker", env=env, ignore=(signal.SIGHUP, signal.SIGINT))
               for env in (OFF, None)]  # fmt: skip
    for client in clients:
        assert client.stdout is not None and client.stdout.readline() == "tick\n"
        client.send_signal(signal.SIGHUP)
        client.send_signal(signal.SIGINT)
    for client in clients:
        assert client.stdout is not None and client.stdout.readline() == "tick\n"  # still following
        assert client.poll() is None
        client.kill()
        client.wait(timeout=10)
    wait_until(lambda: commands_of(server) == [], "the command to end with its client")


def test_the_signals_the_first_client_blocked_or_ignored_are_not_the_next_commands(
    hyprd: Hyprd, talker: None, servers: Path
) -> None:
    """The server starts with every signal at its default and none blocked, whatever its first client had: a
    command that inherited SIGINT blocked would not end at Ctrl-C, and SIGCHLD ignored lost the server its
    children's wait statuses."""

    def odd_signals() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    env = client_env(hyprd, servers)
    subprocess.run([HYPR, "--version"], env=env, preexec_fn=odd_signals, capture_output=True, timeout=60)
    wait_until(lambda: len(cli_servers(servers)) == 1 and any(servers.glob("*.sock")), "the CLI fork server")
    [server] = cli_servers(servers)
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0  # its wait status came back
    client = follow(hyprd, servers)
    assert len(commands_of(server)) == 1
    client.send_signal(signal.SIGINT)
    try:
        client.wait(timeout=10)  # ended by it
    finally:
        client.kill()
    assert cli_servers(servers) == [server]


@pytest.mark.parametrize("server", [True, False], ids=["on-the-server", "without-it"])
def test_a_terminal_session_with_window_size_changes(hyprd: Hyprd, servers: Path, server: bool) -> None:
    """`hypr run -it`: the workload gets a terminal of the client's size, follows its resizing (SIGWINCH reaches
    the command), and its exit code is the client's."""
    if server:
        started_server(hyprd, servers)
    env = client_env(hyprd, servers, None if server else OFF)
    argv = [HYPR, "-H", f"unix://{hyprd.socket}", "run", "--rm", "-it", "busybox", "sh"]
    code, out = in_terminal(argv, env, [
        (b"/ # ", b"stty size; echo hi-$((6*7))\r"), (b"hi-42", (40, 120)),
        (b"hi-42", b"sleep 1; stty size; echo ok-$((1+1))\r"), (b"ok-2", b"exit 3\r"),
    ])  # fmt: skip
    assert code == 3, out
    assert b"24 80" in out and b"40 120" in out, out


def test_a_killed_client_takes_its_command_with_it(hyprd: Hyprd, talker: None, servers: Path) -> None:
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers)
    [command] = commands_of(server)
    client.kill()
    client.wait(timeout=10)
    wait_until(lambda: not Path(f"/proc/{command}").exists(), "the command of a killed client to be killed")
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0  # the server goes on


def test_ctrl_z_stops_the_command_and_fg_resumes_it(hyprd: Hyprd, talker: None, servers: Path) -> None:
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers)
    [command] = commands_of(server)
    try:
        client.send_signal(signal.SIGTSTP)
        wait_until(lambda: state(client.pid) == "T" and state(command) == "T", "client and command to stop")
        client.send_signal(signal.SIGCONT)
        wait_until(lambda: state(command) != "T", "the command to go on")
        client.stdout.readline()
    finally:
        client.kill()
        client.wait(timeout=10)
    wait_until(lambda: not Path(f"/proc/{command}").exists(), "the command to go with its client")


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-"])
def test_a_closed_stdin_stdout_or_stderr_is_as_without_the_server(hyprd: Hyprd, servers: Path, closed: str) -> None:
    """A closed standard fd cannot be passed: the command runs in the client, as without the server (on it, the
    client's socket took the fd's number: the command read or wrote the server's connection, hung or was killed)."""
    hyprd.cli("run", "-d", "--name", "web", "busybox", "sleep", "600")
    started_server(hyprd, servers)
    ended = {}
    for label, env in (("here", OFF), ("server", {})):
        full_env = client_env(hyprd, servers, env)
        script = "".join(f'"$@" {argv} {closed}; echo "$?"; '
                         for argv in ("inspect web", "inspect nosuch", "run -i --rm busybox cat"))  # fmt: skip
        done = subprocess.run(["sh", "-c", script, "sh", HYPR, "-H", f"unix://{hyprd.socket}"], env=full_env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip
        ended[label] = (done.stdout, [line for line in done.stderr.splitlines() if not line.startswith("  ")])
    assert ended["server"] == ended["here"]


def request(argv: list[str], env: dict[str, str]) -> bytes:
    """A request as hypr.cli.entry's client sends it."""
    fields = [entry.MAGIC, b"/", b"22", b"%d" % len(argv), *map(os.fsencode, argv)]
    return b"\0".join(fields + [f"{key}={value}".encode() for key, value in env.items()])


def test_a_command_that_ends_as_its_client_goes_does_not_end_the_server(hyprd: Hyprd, servers: Path) -> None:
    """Both in one wake-up of the server (stopped meanwhile): the ended command, then its gone client."""
    server = started_server(hyprd, servers)
    [path] = servers.glob("*.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn, open(os.devnull, "rb+") as null:
        conn.connect(str(path))
        socket.send_fds(conn, [request([HYPR, "--version"], hyprd.env)], [null.fileno()] * 3)
        reply = conn.recv(64)
        assert reply.startswith(b"pid ")
        os.kill(server, signal.SIGSTOP)
        try:
            wait_until(lambda: state(int(reply[4:])) == "Z", "the command to end")
        finally:
            conn.close()
            os.kill(server, signal.SIGCONT)
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0
    assert cli_servers(servers) == [server]


def test_a_request_whose_client_gave_up_is_not_run(hyprd: Hyprd, servers: Path) -> None:
    """A client that waited in vain for a stalled server runs its command itself and closes its end; the server,
    woken, must not run the same command a second time (no child is forked: its children's page faults, counted
    in cminflt when it reaps one, stay as they were)."""
    server = started_server(hyprd, servers)
    [path] = servers.glob("*.sock")
    before = children_faults(server)
    os.kill(server, signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn, open(os.devnull, "rb+") as null:
            conn.connect(str(path))  # queued in the backlog of the stopped server
            socket.send_fds(conn, [request([HYPR, "--version"], hyprd.env)], [null.fileno()] * 3)
    finally:
        os.kill(server, signal.SIGCONT)
    assert hypr(hyprd, servers, "--version", env={"HYPR_CLI_SERVER": "0"}).returncode == 0
    time.sleep(0.5)  # the server has read the abandoned request by now
    assert children_faults(server) == before
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0  # and it still serves
    assert children_faults(server) > before


def test_a_malformed_or_cut_request_is_refused_and_the_server_goes_on(hyprd: Hyprd, servers: Path) -> None:
    server = started_server(hyprd, servers)
    [path] = servers.glob("*.sock")
    fds_before = len(os.listdir(f"/proc/{server}/fd"))
    ok = request([HYPR, "--version"], hyprd.env)
    cut = request([HYPR, "--version"], {**hyprd.env, "BIG": "x" * (3 << 19)})  # beyond the server's 1 MiB
    with open(os.devnull, "rb+") as null:
        for message, fds in ((b"garbage", [null.fileno()] * 3), (ok, []), (ok, [null.fileno()] * 2),
                             (ok, [null.fileno()] * 4), (cut, [null.fileno()] * 3)):  # fmt: skip
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
                conn.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)  # room for the cut one (root)
                conn.connect(str(path))
                socket.send_fds(conn, [message], fds)
                conn.settimeout(10)
                assert not conn.recv(64).startswith(b"pid "), (message[:20], len(fds))
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0
    assert cli_servers(servers) == [server]
    # (it closes a connection just after its last answer)
    wait_until(lambda: len(os.listdir(f"/proc/{server}/fd")) == fds_before, "the server to hold no more fds")


@pytest.mark.parametrize("wrapper", [["setpriv", "--groups", "65534"], ["setpriv", "--bounding-set", "-net_raw"],
                                     ["unshare", "--mount"]], ids=["groups", "capabilities", "mount-namespace"])  # fmt: skip
def test_a_client_with_other_credentials_or_namespaces_runs_its_command_itself(
    hyprd: Hyprd, talker: None, servers: Path, wrapper: list[str]
) -> None:
    """A command never runs with more than its client may do, nor where a path names another file."""
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers, wrapper=tuple(wrapper))
    try:
        assert commands_of(server) == []
    finally:
        client.kill()
        client.wait(timeout=10)


def test_no_fd_of_a_client_but_its_stdio_stays_open_in_the_server_or_reaches_a_command(
    hyprd: Hyprd, talker: None, servers: Path
) -> None:
    """The server that a client starts keeps none of the fds it inherited (a script's `exec 9>lock; flock 9`, a
    make jobserver's pipe: its reader would wait for the server's end), and a command has its client's stdio as
    fds 0-2 only."""
    read, write = os.pipe()
    try:
        subprocess.run([HYPR, "--version"], env=client_env(hyprd, servers),
                       pass_fds=(write,), capture_output=True, timeout=60)  # fmt: skip
        os.close(write)
        wait_until(lambda: len(cli_servers(servers)) == 1, "the CLI fork server")
        assert select.select([read], [], [], 30)[0] and os.read(read, 1) == b""  # no one holds the write end
    finally:
        os.close(read)
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers)
    try:
        [command] = commands_of(server)
        fds = {fd.name: os.readlink(fd) for fd in Path(f"/proc/{command}/fd").iterdir()}
        assert sorted(fd for fd, target in fds.items() if target in (fds["1"], fds["2"])) == ["1", "2"]
    finally:
        client.kill()
        client.wait(timeout=10)


def test_a_server_short_of_fds_lets_the_clients_beyond_its_capacity_run_their_commands(
    hyprd: Hyprd, talker: None, servers: Path
) -> None:
    """Started under a limit of 40 fds (its commands hold 2 each, a request 4 more, 32 kept for the rest): 4 commands
    at once; the clients beyond run their own, and the server goes on (out of fds, it died or ran a command twice)."""
    env = client_env(hyprd, servers)
    subprocess.run(["prlimit", "--nofile=40:40", HYPR, "--version"], env=env, capture_output=True, timeout=60)
    wait_until(lambda: len(cli_servers(servers)) == 1 and any(servers.glob("*.sock")), "the CLI fork server")
    [server] = cli_servers(servers)
    clients = []
    try:
        for _ in range(20):
            clients.append(popen(hyprd, servers, "logs", "-f", "talker"))
            assert clients[-1].stdout is not None and clients[-1].stdout.readline() == "tick\n"
        assert len(commands_of(server)) == 4
    finally:
        for client in clients:
            client.kill()
            client.wait(timeout=10)
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0 and cli_servers(servers) == [server]


def test_a_command_dies_with_its_server_and_the_client_says_so(hyprd: Hyprd, talker: None, servers: Path) -> None:
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers)
    [command] = commands_of(server)
    os.kill(command, signal.SIGSTOP)  # even a stopped one
    os.kill(server, signal.SIGKILL)
    assert client.wait(timeout=10) == 1
    assert client.stderr is not None and "the CLI server went away" in client.stderr.read()
    wait_until(lambda: not Path(f"/proc/{command}").exists(), "the command to die with the server")


def test_sigterm_stops_the_server_after_its_running_commands(hyprd: Hyprd, talker: None, servers: Path) -> None:
    server = started_server(hyprd, servers)
    client = follow(hyprd, servers)
    os.kill(server, signal.SIGTERM)
    wait_until(lambda: list(servers.glob("*.sock")) == [], "the socket to go")
    assert client.stdout.readline() == "tick\n" and Path(f"/proc/{server}").exists()  # the command goes on
    assert hypr(hyprd, servers, "ps", "-q").returncode == 0  # and a new server starts meanwhile
    wait_until(lambda: cli_servers(servers) not in ([], [server]), "a new server while the old one drains")
    client.send_signal(signal.SIGINT)
    client.wait(timeout=10)
    wait_until(lambda: not Path(f"/proc/{server}").exists(), "the server to end with its last command")


def test_an_idle_server_exits_and_the_next_command_starts_another(hyprd: Hyprd, servers: Path) -> None:
    idle = {"HYPR_CLI_SERVER_IDLE": "1"}
    hypr(hyprd, servers, "--version", env=idle)
    wait_until(lambda: len(cli_servers(servers)) == 1, "a server")
    [first] = cli_servers(servers)
    wait_until(lambda: not Path(f"/proc/{first}").exists(), "the idle server to exit", timeout=15)
    assert list(servers.glob("*.sock")) == []
    assert hypr(hyprd, servers, "ps", "-q", env=idle).returncode == 0
    wait_until(lambda: cli_servers(servers) not in ([], [first]), "a new server")


def test_one_server_per_network_namespace(hyprd: Hyprd, servers: Path) -> None:
    started_server(hyprd, servers)
    env = client_env(hyprd, servers)
    inside = ["nsenter", f"--net=/run/netns/{hyprd.ns}", HYPR, "-H", f"unix://{hyprd.socket}", "ps", "-q"]
    assert subprocess.run(inside, env=env, capture_output=True, timeout=30).returncode == 0
    wait_until(lambda: len(cli_servers(servers)) == 2, "a server for the daemon's namespace")
    namespaces = {os.stat(f"/proc/{pid}/ns/net").st_ino for pid in cli_servers(servers)}
    assert namespaces == {os.stat("/proc/self/ns/net").st_ino, os.stat(f"/run/netns/{hyprd.ns}").st_ino}


def test_no_server_when_turned_off(hyprd: Hyprd, servers: Path) -> None:
    assert hypr(hyprd, servers, "ps", "-q", env=OFF).returncode == 0
    time.sleep(1.0)  # a server would have been started by now
    assert cli_servers(servers) == [] and list(servers.glob("*.sock")) == []
