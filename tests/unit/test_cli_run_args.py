"""Pure CLI logic: options after IMAGE, and which exec argv the CLI agrees to run."""

import click
import pytest

from hypr.cli.workloads import hoist_options, network_attachment, run, run_body


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pub", ("pub", {})),
        ("name=pub", ("pub", {})),
        ("name=pub,gw-priority=-2", ("pub", {"GwPriority": -2})),
        (
            "name=pub,alias=a,alias=b,ip=10.1.0.5,ip6=fd00::5,mac-address=02:42:0a:01:00:05",
            (
                "pub",
                {
                    "Aliases": ["a", "b"],
                    "IPAMConfig": {"IPv4Address": "10.1.0.5", "IPv6Address": "fd00::5"},
                    "MacAddress": "02:42:0a:01:00:05",
                },
            ),
        ),
        (
            'Name=pub,link-local-ip=169.254.1.1,"driver-opt=com.docker.network.endpoint.sysctls=x=1"',
            (
                "pub",
                {
                    "IPAMConfig": {"LinkLocalIPs": ["169.254.1.1"]},
                    "DriverOpts": {"com.docker.network.endpoint.sysctls": "x=1"},
                },
            ),
        ),
    ],
)
def test_network_long_syntax_as_the_docker_cli_reads_it(value: str, expected: tuple[str, dict[str, object]]) -> None:
    assert network_attachment(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("name=pub,colour=red", "invalid field key colour"),
        ("name=pub,gw-priority=high", "invalid gw-priority: 'high'"),
        ("alias=a,gw-priority=1", "network name/id is not specified"),
        ("name=pub,alias", "invalid field alias"),
    ],
)
def test_network_long_syntax_errors_are_dockers(value: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        network_attachment(value)


def test_run_body_gives_the_first_network_the_flags_and_keeps_each_networks_own_fields() -> None:
    body = run_body("busybox", ["true"], ["name=b,gw-priority=5,alias=x", "a"], "10.1.0.9", ["y"], [], [], [], None,
                    "sandbox", "no")  # fmt: skip
    assert body["HostConfig"]["NetworkMode"] == "b"
    assert body["NetworkingConfig"]["EndpointsConfig"] == {
        "b": {"GwPriority": 5, "Aliases": ["x", "y"], "IPAMConfig": {"IPv4Address": "10.1.0.9"}},
        "a": {},
    }
