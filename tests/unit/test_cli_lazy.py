"""The CLI loads a command's module only when that command runs: the table that says where each command lives
must name every command, and a plain command must not import the others' modules."""

from __future__ import annotations

import subprocess
import sys

from hypr.cli.main import COMMAND_MODULES, cli, commands_of


def test_every_command_is_in_the_table() -> None:
    for module in set(COMMAND_MODULES.values()):
        for name in commands_of(module):
            assert COMMAND_MODULES.get(name) == module, f"{name} ({module}) is missing from COMMAND_MODULES"


def test_every_listed_command_resolves() -> None:
    import click

    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name


def test_version_imports_no_command_module_nor_http_library() -> None:
    code = (
        "import sys; from hypr.cli.main import cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('hypr.cli.', 'httpx', 'http.client', 'rich', 'urllib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["hypr.cli.context", "hypr.cli.main", "hypr.cli.output"]


def test_the_workload_commands_import_no_models() -> None:
    """`ps`, `run -d busybox` and the like: hypr.models and hypr.ports load only when ports or a pull need them."""
    code = "import sys, hypr.cli.workloads; print(sorted(m for m in sys.modules if m in ('hypr.models', 'hypr.ports')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == []
