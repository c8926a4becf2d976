"""The docker CLI and docker-py on hypr's API socket: foreground runs, attach, logs kept per stream, exec, wait."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.integration.harness import HYPR, Hyprd, in_terminal, wait_until


def docker_cli(hyprd: Hyprd, *argv: str, rc: int | None = 0, stdin: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    done = subprocess.run(["docker", *argv], input=stdin, capture_output=True, env=env, timeout=timeout,
                          stdin=None if stdin is not None else subprocess.DEVNULL)  # fmt: skip
    if rc is not None:
        assert done.returncode == rc, (argv, done.returncode, done.stdout, done.stderr)
    return done


def names(hyprd: Hyprd) -> list[str]:
    return docker_cli(hyprd, "ps", "-a", "--format", "{{.Names}}").stdout.decode().split()


def test_foreground_run_keeps_stdout_and_stderr_apart_and_passes_the_exit_code(hyprd: Hyprd) -> None:
    done = docker_cli(hyprd, "run", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", rc=3)
    assert (done.stdout, done.stderr) == (b"out\n", b"err\n")
    assert docker_cli(hyprd, "logs", "fg").stdout == b"out\n"
    hidden = docker_cli(hyprd, "logs", "fg")
    assert hidden.stderr == b"err\n"  # the CLI writes the stderr frames to its stderr
    stamped = docker_cli(hyprd, "logs", "-t", "fg").stdout.decode()
    assert stamped.endswith(" out\n") and stamped[:4].isdigit() and "T" in stamped.split()[0]
    assert docker_cli(hyprd, "run", "busybox", "echo", "hi").stdout == b"hi\n"


def test_rm_never_leaves_the_container_behind(hyprd: Hyprd) -> None:
    assert docker_cli(hyprd, "run", "--rm", "busybox", "echo", "hi").stdout == b"hi\n"
    docker_cli(hyprd, "run", "--rm", "--name", "fails", "busybox", "sh", "-c", "echo bye >&2; exit 7", rc=7)
    assert names(hyprd) == []


def test_run_interactive_feeds_stdin_and_closes_it(hyprd: Hyprd, tmp_path: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(2000))
    assert docker_cli(hyprd, "run", "--rm", "-i", "busybox", "cat", stdin=data).stdout == data
    assert docker_cli(hyprd, "run", "--rm", "-i", "busybox", "wc", "-l", stdin=data).stdout.split() == [b"2000"]
    assert names(hyprd) == []


def test_start_attach_and_logs_filters(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "create", "--name", "later", "busybox", "sh", "-c", "echo one; sleep 1; echo two >&2")
    done = docker_cli(hyprd, "start", "-a", "later")
    assert (done.stdout, done.stderr) == (b"one\n", b"two\n")
    assert docker_cli(hyprd, "logs", "--tail", "1", "later").stderr == b"two\n"
    assert docker_cli(hyprd, "logs", "--tail", "1", "later").stdout == b""
    until = docker_cli(hyprd, "logs", "--until", "1s", "later")  # both lines are older than a second by now
    time.sleep(1.1)
    assert docker_cli(hyprd, "logs", "--since", "1s", "later").stdout == b""
    assert until.returncode == 0
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        container = client.containers.get("later")
        assert container.logs(stdout=True, stderr=False) == b"one\n"
        assert container.logs(stdout=False, stderr=True) == b"two\n"
    finally:
        client.close()


def test_docker_attach_to_a_running_container(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "run", "-d", "-i", "--name", "talker", "busybox", "sh", "-c",
               "while read line; do echo \"got $line\"; done")  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    attach = subprocess.Popen(["docker", "attach", "talker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        assert attach.stdin is not None and attach.stdout is not None
        attach.stdin.write(b"hello\n")
        attach.stdin.flush()
        ready, _, _ = select.select([attach.stdout], [], [], 30)
        assert ready and attach.stdout.readline() == b"got hello\n"
        docker_cli(hyprd, "kill", "talker")
        assert attach.wait(timeout=30) == 137  # the CLI ends with the container, with its code
    finally:
        attach.kill()
        attach.wait()


def test_attach_with_a_tty_detaches_on_ctrl_p_ctrl_q(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "run", "-d", "-i", "-t", "--name", "shell", "busybox", "sh")
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    code, out = in_terminal(["docker", "attach", "shell"], env, [(b"", b"echo hi-$((6*7))\r"), (b"hi-42", b"\x10\x11")])
    assert b"hi-42" in out and b"read escape sequence" in out, (code, out)  # the CLI's own words, exit code 1
    assert json.loads(docker_cli(hyprd, "inspect", "shell").stdout)[0]["State"]["Running"] is True


def test_tty_run_gets_a_real_terminal(hyprd: Hyprd) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    code, out = in_terminal(["docker", "run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty size"], env, [])
    assert code == 0 and b"/dev/pts/" in out and b"not a tty" not in out, out
    code, out = in_terminal(["docker", "run", "--rm", "-it", "busybox", "sh"], env,
                            [(b"", b"echo hi-$((6*7))\r"), (b"hi-42", b"exit 3\r")])  # fmt: skip
    assert code == 3 and b"hi-42" in out, out
    wait_until(lambda: names(hyprd) == [], "the --rm containers to go")


def test_wait_conditions_and_docker_py_auto_remove(hyprd: Hyprd) -> None:
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        out = client.containers.run("busybox", ["sh", "-c", "echo via docker-py"], auto_remove=True)
        assert out == b"via docker-py\n"
        container = client.containers.create("busybox", ["sh", "-c", "exit 5"])
        with pytest.raises(docker.errors.APIError):
            container.wait(condition="sometime")
        container.start()
        assert container.wait(condition="not-running")["StatusCode"] == 5
        assert container.wait()["StatusCode"] == 5
        container.remove()
    finally:
        client.close()


def test_an_auto_remove_exit_is_kept_for_a_late_wait(hyprd: Hyprd) -> None:
    """docker-py's run(auto_remove=True) follows the logs and asks for the exit code only after start: an --rm
    workload nobody has claimed yet is kept a moment (RM_GRACE) for that wait, then removed all the same."""
    api = docker.APIClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        created = api.create_container("busybox", ["sh", "-c", "exit 3"],
                                       host_config=api.create_host_config(auto_remove=True))  # fmt: skip
        api.start(created)
        logs = api.logs(created, stream=True, follow=True)
        wait_until(lambda: not api.containers(filters={"id": created["Id"]}), "the command to end", timeout=20)
        time.sleep(0.3)  # past the log follower's end: without the grace the workload was gone by now
        assert api.wait(created)["StatusCode"] == 3
        assert list(logs) == []
        wait_until(lambda: not api.containers(all=True, filters={"id": created["Id"]}), "the --rm workload to go",
                   timeout=10)  # fmt: skip
    finally:
        api.close()


def test_a_wait_whose_client_left_does_not_hold_the_daemon_up(hyprd: Hyprd) -> None:
    """`docker run -d` asks to wait for the exit and leaves at once; hyprd must still stop promptly (aiohttp
    waited 60 s for that handler, which was waiting for a workload that runs for minutes). The harness stops
    with SIGTERM and kills after 15 s."""
    docker_cli(hyprd, "run", "-d", "--name", "long", "busybox", "sleep", "600")
    started = time.monotonic()
    assert hyprd.stop() == 0, f"hyprd did not stop on SIGTERM within {time.monotonic() - started:.0f} s"


def test_docker_exec(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "run", "-d", "--name", "box", "busybox", "sleep", "600")
    done = docker_cli(hyprd, "exec", "-e", "X=1", "-w", "/tmp", "box", "sh", "-c", 'echo "$X $(pwd)"; echo e >&2; exit 4',
                      rc=4)  # fmt: skip
    assert (done.stdout, done.stderr) == (b"1 /tmp\n", b"e\n")
    assert docker_cli(hyprd, "exec", "-i", "box", "cat", stdin=b"through stdin\n").stdout == b"through stdin\n"
    assert docker_cli(hyprd, "exec", "-u", "nobody", "box", "id", "-u").stdout == b"65534\n"
    assert docker_cli(hyprd, "exec", "box", "no-such-program", rc=None).returncode in (126, 127)
    docker_cli(hyprd, "exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
    wait_until(
        lambda: docker_cli(hyprd, "exec", "box", "cat", "/tmp/d", rc=None).stdout == b"detached\n", "the -d exec"
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    code, out = in_terminal(["docker", "exec", "-it", "box", "sh"], env,
                            [(b"", b"tty; echo $((6*7))\r"), (b"42", b"exit 5\r")])  # fmt: skip
    assert code == 5 and b"/dev/pts/" in out, out


def test_exec_with_a_tty_many_times(hyprd: Hyprd) -> None:
    """crun may connect to the console socket before it sends the pty: every `exec -it` gets its terminal (the
    daemon read that connection without waiting and answered 500 to some: 'unable to upgrade to tcp')."""
    docker_cli(hyprd, "run", "-d", "--name", "box", "busybox", "sleep", "600")
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    for _ in range(20):
        code, out = in_terminal(["docker", "exec", "-it", "box", "sh"], env,
                                [(b"", b"echo $((6*7))\r"), (b"42", b"exit 5\r")])  # fmt: skip
        assert code == 5 and b"unable to upgrade" not in out, out


def test_docker_py_exec_run_stream_demux(hyprd: Hyprd) -> None:
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        container = client.containers.run("busybox", ["sleep", "600"], detach=True)
        result = container.exec_run(["sh", "-c", "echo out; echo err >&2"], stream=True, demux=True)
        chunks = list(result.output)
        assert b"".join(o for o, _ in chunks if o) == b"out\n" and b"".join(e for _, e in chunks if e) == b"err\n"
        code, _ = container.exec_run(["sh", "-c", "exit 3"])
        assert code == 3
        exec_id = client.api.exec_create(container.id, ["true"])["Id"]
        client.api.exec_start(exec_id)
        info = client.api.exec_inspect(exec_id)
        assert (info["ExitCode"], info["Running"], info["ProcessConfig"]["entrypoint"]) == (0, False, "true")
        with pytest.raises(docker.errors.APIError) as unknown:
            client.api.exec_inspect("nope")
        assert unknown.value.status_code == 404
        container.remove(force=True)
    finally:
        client.close()


def test_the_hypr_cli_on_the_same_streams(hyprd: Hyprd) -> None:
    done = hyprd.cli("run", "--name", "h1", "busybox", "sh", "-c", "echo out; echo err >&2; exit 2", rc=2)
    assert (done.stdout, done.stderr) == ("out\n", "err\n")
    logs = hyprd.cli("logs", "-t", "--tail", "1", "h1")
    assert logs.stdout == "" and logs.stderr.endswith(" err\n")
    assert hyprd.cli("logs", "--since", "1h", "h1").stdout == "out\n"
    assert hyprd.cli("logs", "--until", "2000-01-01T00:00:00Z", "h1").stdout == ""
    piped = subprocess.run([HYPR, "-H", f"unix://{hyprd.socket}", "run", "--rm", "-i", "busybox", "wc", "-c"], input=b"12345",
                           capture_output=True, env=hyprd.env, timeout=60)  # fmt: skip
    assert piped.stdout.split() == [b"5"]
    hyprd.cli("run", "-d", "--name", "h2", "busybox", "sleep", "600")
    done = hyprd.cli("exec", "-e", "X=1", "-w", "/tmp", "h2", "sh", "-c", 'echo "$X $(pwd)"; echo e >&2; exit 4', rc=4)
    assert (done.stdout, done.stderr) == ("1 /tmp\n", "e\n")
    assert sorted(names(hyprd)) == ["h1", "h2"]  # the --rm one is gone


def test_rm_also_when_the_command_cannot_start(hyprd: Hyprd) -> None:
    done = docker_cli(hyprd, "run", "--rm", "busybox", "no-such-command", rc=127)
    assert b"executable file not found" in done.stderr
    wait_until(lambda: names(hyprd) == [], "the --rm container that never started to go")
    docker_cli(hyprd, "run", "--name", "kept", "busybox", "no-such-command", rc=127)
    assert names(hyprd) == ["kept"]


def test_a_slow_reader_gets_all_of_a_big_output(hyprd: Hyprd) -> None:
    """An attached client that reads slowly slows the workload down (as in Docker); nothing is lost."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}
    script = "head -c 20000000 /dev/zero | tr '\\0' x; echo end >&2"
    attached = subprocess.Popen(["docker", "run", "--rm", "busybox", "sh", "-c", script], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert attached.stdout is not None
    time.sleep(3)  # nothing read meanwhile: far more than the pipes and buffers hold is waiting
    received = 0
    while chunk := attached.stdout.read(65536):
        received += len(chunk)
    _, err = attached.communicate(timeout=60)
    assert (received, err, attached.returncode) == (20000000, b"end\n", 0)
