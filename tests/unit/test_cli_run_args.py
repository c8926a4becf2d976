"""Pure CLI logic: options after IMAGE, and which exec argv the CLI agrees to run."""

import sys

import click
import pytest

from hypr.cli.workloads import hoist_options, run, trusted_exec_argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["busybox", "-p", "8080:80", "httpd"], ["-p", "8080:80", "busybox", "httpd"]),
        (["-d", "host", "python3", "-m", "http.server"], ["-d", "host", "python3", "-m", "http.server"]),
        (["busybox", "--name", "x", "--", "sh", "-c", "ls"], ["--name", "x", "busybox", "sh", "-c", "ls"]),
        (["busybox", "-e", "A=1", "-e", "B=2", "env"], ["-e", "A=1", "-e", "B=2", "busybox", "env"]),
    ],
)
def test_options_after_the_image_are_ours_until_the_first_other_word(argv: list[str], expected: list[str]) -> None:
    assert hoist_options(run, argv) == expected


def test_exec_runs_only_hypr_helpers_from_this_installation() -> None:
    target = trusted_exec_argv(["/evil/python", "-I", "-S", "/evil/shim.py", "exec", "{}"])
    assert target[0] == sys.executable and target[3].endswith("hypr/runtime/shim.py") and target[4:] == ["exec", "{}"]
    for bad in (["/bin/sh", "-c", "id"], ["/x/python", "-I", "-S", "/tmp/other.py", "{}"], ["python", "-I"]):
        with pytest.raises(click.ClickException):
            trusted_exec_argv(bad)
