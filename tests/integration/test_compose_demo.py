"""The demo stack (examples/demo) brought up for real: web -> api -> db by service names, web cannot reach db."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import Hyprd, run_in

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "hypr-compose.yml"


def test_demo_stack_chain_and_isolation(hyprd: Hyprd) -> None:
    up = hyprd.cli("compose", "--progress", "plain", "-f", str(DEMO), "up", "-d")
    assert "Network demo_frontend  Created" in up.stderr
    assert "Container demo-web-1  Started" in up.stderr
    answer = run_in(hyprd.ns, "curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/").stdout
    assert answer.strip() == "web -> api -> db: 3 rows"
    probe = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 5432"
    refused = hyprd.cli("exec", "demo-web-1", "sh", "-c", probe.format("db"), rc=None)
    assert refused.returncode != 0 and "HTTP/1" not in refused.stdout
    by_ip = hyprd.cli("exec", "demo-web-1", "sh", "-c", probe.format("172.30.1.10"), rc=None)
    assert "HTTP/1" not in by_ip.stdout
    assert (
        "HTTP/1"
        in hyprd.cli("exec", "demo-api-1", "sh", "-c", probe.format("api-internal").replace("5432", "8000")).stdout
    )
    ps = hyprd.cli("compose", "-f", str(DEMO), "ps").stdout
    assert "demo_backend=172.30.1.10" in ps
    again = hyprd.cli("compose", "--progress", "plain", "-f", str(DEMO), "up", "-d")
    assert "Created" not in again.stderr and again.stderr.count("Running") == 3
    hyprd.cli("compose", "-f", str(DEMO), "down")
    assert hyprd.cli("compose", "-f", str(DEMO), "ps", "-a").stdout.strip().count("\n") == 0
    assert "demo_" not in hyprd.cli("network", "ls").stdout
