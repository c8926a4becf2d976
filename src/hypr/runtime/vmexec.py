"""`hypr exec` into a VM, run as `python3 -I -S vmexec.py <state dir> <json>` (stdlib only, so it starts fast).

It talks to the guest agent (the guest init, on /dev/hvc0) through QEMU's unix socket `agent.sock`, which needs
no guest network. Protocol, one request at a time (QEMU accepts one client; others wait in the listen backlog):
    host: "P <id>\\n" (repeated until answered: the guest may still be booting)      guest: "R <id>\\n"
    host: "X <id> <base64 of a sh script>\\n"
    guest: "X <id> <exit code> <stdout bytes> <stderr bytes>\\n" then stdout, then stderr
Output arrives when the command has ended (no streaming, no stdin). The random id skips whatever a previous,
interrupted client left in the stream: after our "R <id>" the guest has finished everything queued before it.
Exit code: the command's; 126 when the VM is not running or does not answer in time.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shlex
import socket
import sys
import time
from typing import Any

AGENT_SOCK = "agent.sock"
PING_EVERY = 0.2  # seconds between readiness pings while the guest boots
READY_TIMEOUT = 120.0  # TCG boots take seconds, several at once on a busy machine longer
EXIT_CANNOT_RUN = 126
EXIT_VM_GONE = 137


def script(argv: list[str], env: dict[str, str], workdir: str | None) -> str:
    """What the guest agent runs: the guest init's `enter`, which runs `argv` chrooted in the image as the
    workload's user, with the workload's environment plus `env`, in `workdir` (default: the workload's). Exit 127
    when the command is not in the image, 126 when it cannot be executed."""
    words = [*(f"{k}={v}" for k, v in env.items()), "--", *argv]
    return f"exec /.hypr/busybox sh /init enter {shlex.quote(workdir or '')} {' '.join(map(shlex.quote, words))}\n"


class AgentGone(Exception):
    pass


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def fill(self, timeout: float | None) -> bool:
        """Read what is there; False on timeout."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AgentGone("the VM closed the agent channel")
        self.buf += chunk
        return True

    def line(self, timeout: float | None) -> bytes | None:
        """The next complete line (without newline), or None when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.fill(left) and deadline is not None and time.monotonic() >= deadline:
                return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill(None)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def wait_ready(chan: Channel, ident: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pong = f"R {ident}".encode()
    while time.monotonic() < deadline:
        chan.sock.sendall(f"P {ident}\n".encode())
        until = time.monotonic() + PING_EVERY
        while (left := until - time.monotonic()) > 0:
            line = chan.line(left)
            if line is None:
                break
            if line.rstrip(b"\r").endswith(pong):
                return True
    return False


def run(chan: Channel, argv: list[str], env: dict[str, str], workdir: str | None, timeout: float) -> int:
    ident = secrets.token_hex(8)
    if not wait_ready(chan, ident, timeout):
        sys.stderr.write(f"hypr exec: the VM's agent did not answer within {timeout:.0f}s\n")
        return EXIT_CANNOT_RUN
    payload = base64.b64encode(script(argv, env, workdir).encode()).decode()
    chan.sock.sendall(f"X {ident} {payload}\n".encode())
    head = f"X {ident} ".encode()
    while True:
        line = chan.line(None)
        assert line is not None
        if line.startswith(head):
            break
    code, out_len, err_len = (int(v) for v in line[len(head) :].split())
    out = chan.exactly(out_len)
    err = chan.exactly(err_len)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)
    sys.stderr.flush()
    return code


def main(args: list[str]) -> int:
    if len(args) != 3:
        sys.stderr.write("usage: vmexec.py STATE_DIR JSON\n")
        return 2
    cfg: dict[str, Any] = json.loads(args[2])
    try:
        os.chdir(args[1])  # the socket path is relative: absolute ones may exceed 108 bytes
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(AGENT_SOCK)
    except OSError as exc:
        sys.stderr.write(f"hypr exec: the VM is not running ({exc.strerror})\n")
        return EXIT_CANNOT_RUN
    with sock:
        try:
            return run(Channel(sock), cfg["argv"], cfg.get("env") or {}, cfg.get("workdir"), READY_TIMEOUT)
        except (AgentGone, ConnectionError) as exc:
            sys.stderr.write(f"hypr exec: {exc}\n")
            return EXIT_VM_GONE


if __name__ == "__main__":
    sys.exit(main(sys.argv))
