"""docker-compose v1 (1.29.2, the Python one) drives a two-network stack on hypr's API socket: up (detached and in
the foreground), ps, exec, logs, down.

It runs from a virtualenv of its own, made once per machine under /tmp (its pins: 1.29.2 needs docker-py < 7 and
the requests/urllib3 that go with it; PyYAML 5.4.1 is built without build isolation, as its sdist does not build
with Cython 3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Hyprd, links

PINS = ("docker-compose==1.29.2", "docker==6.1.3", "requests==2.31.0", "urllib3==1.26.20")
BUILD_FIRST = ("setuptools<70", "wheel")
NO_ISOLATION = ("PyYAML==5.4.1",)
STACK = """
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web up; echo web err >&2; trap 'exit 0' TERM; sleep 600 & wait"]
    networks: [front, back]
  db:
    image: busybox
    command: ["sh", "-c", "echo db up; trap 'exit 0' TERM; sleep 600 & wait"]
    networks: [back]
networks:
  front: {}
  back: {}
"""
ONCE = """
version: "3.8"
services:
  one:
    image: busybox
    command: ["echo", "hello from one"]
"""


@pytest.fixture(scope="session")
def compose_v1() -> Path:
    key = hashlib.sha256(" ".join((*PINS, *BUILD_FIRST, *NO_ISOLATION)).encode()).hexdigest()[:12]
    venv = Path(f"/tmp/hypr-compose-v1-{key}")
    binary = venv / "bin" / "docker-compose"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, *BUILD_FIRST], check=True, timeout=600)
        subprocess.run([*pip, "--no-build-isolation", *NO_ISOLATION], check=True, timeout=600)
        subprocess.run([*pip, *PINS], check=True, timeout=600)
    return binary


@pytest.mark.slow
def test_compose_v1_two_networks_up_exec_logs_down(hyprd: Hyprd, compose_v1: Path, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(STACK)
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}

    def compose(*argv: str, file: str = "docker-compose.yml") -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(compose_v1), "-p", "demo", "-f", file, *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done

    compose("up", "-d")
    ps = compose("ps").stdout
    assert "demo_web_1" in ps and "demo_db_1" in ps and ps.count(" Up ") == 2
    assert {"demo_front", "demo_back"} <= {n["Name"] for n in hyprd.client().networks()}
    reached = compose("exec", "-T", "web", "sh", "-c", "ping -c1 -W2 db && echo reached").stdout
    assert "reached" in reached
    logs = compose("logs", "--no-color").stdout
    assert "web_1  | web up" in logs and "web_1  | web err" in logs and "db_1   | db up" in logs
    compose("down")
    assert hyprd.client().containers(all=True) == [] and not [
        n for n in links(hyprd.ns) if n.startswith("vbr") and n != "vbr0"
    ]
    (tmp_path / "once.yml").write_text(ONCE)
    foreground = compose("up", file="once.yml").stdout
    assert "hello from one" in foreground
    compose("down", file="once.yml")
