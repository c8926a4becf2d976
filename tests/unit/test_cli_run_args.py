"""Pure CLI logic: options after IMAGE, and which exec argv the CLI agrees to run."""

import pytest

from hypr.cli.workloads import hoist_options, run


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
