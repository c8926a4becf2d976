"""Options shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import private_cli_servers


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session", autouse=True)
def cli_fork_servers() -> Iterator[Path]:
    """Every `hypr` the tests run goes through the CLI fork server as users' commands do (hypr.cli.entry), with a
    socket directory of this session's (one server per network namespace the tests run `hypr` in); the servers
    are stopped at the end."""
    with private_cli_servers() as directory:
        yield directory
