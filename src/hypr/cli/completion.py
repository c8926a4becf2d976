"""`hypr completion bash|zsh|fish`: the script that makes a shell complete hypr's commands, options and the names
of workloads and networks (asked of the daemon as you type), as `docker completion SHELL` does.

    source <(hypr completion bash)        # or: eval "$(_HYPR_COMPLETE=bash_source hypr)"

Click does the work: the script calls `hypr` back with _HYPR_COMPLETE set, and click answers from the command
tree and the `shell_complete` callbacks of the arguments that name workloads and networks
(`context.workload_names`, `context.network_names`).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_HYPR_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish)."""
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(root.command, {}, root.info_name or "hypr", COMPLETE_VAR).source())


COMMANDS = (completion,)
