"""The CLI loads a command's module only when that command runs: the table that says where each command lives
must name every command, and a plain command must not import the others' modules."""

from __future__ import annotations

import gc
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
    """Nor socket.py (hypr.client speaks through _socket): its enums and selectors cost every command ~2 ms."""
    code = (
        "import sys; from hypr.cli.main import cli; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('hypr.cli.', 'httpx', 'http.client', 'rich', 'urllib', 'socket', 'selectors'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["hypr.cli.context", "hypr.cli.main", "hypr.cli.output"]


def test_the_workload_commands_import_no_models() -> None:
    """`ps`, `run -d busybox` and the like: hypr.models and hypr.ports load only when ports or a pull need them."""
    code = "import sys, hypr.cli.workloads; print(sorted(m for m in sys.modules if m in ('hypr.models', 'hypr.ports')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == []


def console_script(*argv: str) -> subprocess.CompletedProcess[str]:
    """`hypr ARGV...` through the console script's entry point (hypr.cli.entry), output captured."""
    code = "import sys; sys.argv[0] = 'hypr'; from hypr.cli.entry import main; main()"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)


def test_the_console_script_flushes_its_output_and_keeps_the_exit_code() -> None:
    """It ends with os._exit: everything printed must still arrive, and the code be the command's."""
    done = console_script("--help")
    assert done.returncode == 0 and done.stdout.startswith("Usage: hypr") and "version" in done.stdout
    done = console_script("--version")
    assert (done.returncode, done.stdout) == (0, "hypr, version 0.1.0\n")
    done = console_script("no-such-command")
    assert done.returncode == 2 and "No such command 'no-such-command'" in done.stderr
    done = console_script("-H", "unix:///nonexistent/hypr.sock", "ps")
    assert done.returncode == 1 and "Is hyprd running?" in done.stderr


def test_the_collector_is_back_on_when_a_command_runs() -> None:
    """The entry point turns the garbage collector off for the imports; the group's callback turns it back on
    (a long `logs -f` or `compose up` must not keep every cycle it makes)."""
    from click.testing import CliRunner

    gc.disable()
    try:
        CliRunner().invoke(cli, ["-H", "unix:///nonexistent/hypr.sock", "version"])
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
