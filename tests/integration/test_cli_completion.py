"""Shell completion against a real daemon: command names, and the names of workloads and networks asked of the
daemon for a partial word, through click's completion protocol as the bash/zsh/fish scripts call it."""

from __future__ import annotations

import subprocess

from tests.integration.harness import HYPR, Hyprd


def complete(hyprd: Hyprd, words: str, shell: str = "bash") -> list[str]:
    """What `hypr` offers for the last word of `words` (as bash asks: COMP_WORDS, COMP_CWORD)."""
    parts = words.split(" ")
    env = {**hyprd.env, "_HYPR_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    out = subprocess.run(
        [HYPR, "-H", f"unix://{hyprd.socket}", *parts[1:]], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if line]


def test_completes_commands_workloads_and_networks(hyprd: Hyprd) -> None:
    with hyprd.client() as client:
        client.create_network({"Name": "frontnet"})
        client.create_network({"Name": "backnet"})
        for name in ("web1", "web2", "db"):
            client.create_container(
                {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "bridge"}}, name
            )
    assert complete(hyprd, "hypr netw") == ["network"]
    assert complete(hyprd, "hypr rm we") == ["web1", "web2"]
    assert complete(hyprd, "hypr logs d") == ["db"]
    assert complete(hyprd, "hypr network inspect fr") == ["frontnet"]
    assert complete(hyprd, "hypr network connect b") == ["backnet", "bridge"]
    assert complete(hyprd, "hypr network connect backnet w") == ["web1", "web2"]
    assert complete(hyprd, "hypr run --network fro") == ["frontnet"]
    assert complete(hyprd, "hypr rm zz") == []


def test_no_daemon_completes_nothing_and_prints_no_error(hyprd: Hyprd) -> None:
    hyprd.stop()
    assert complete(hyprd, "hypr rm we") == []
    assert complete(hyprd, "hypr sto") == ["stop"]  # commands need no daemon
    hyprd.start()


def test_completion_scripts_for_each_shell(hyprd: Hyprd) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = hyprd.cli("completion", shell).stdout
        assert "_HYPR_COMPLETE" in script and f"{shell}_complete" in script
    assert hyprd.cli("completion", "tcsh", rc=None).returncode != 0
