"""What every backend keeps in a workload's state directory about its running process: `handle.json` (the process
to re-adopt after a daemon restart, named by pid and start time) and `exit_code` (written when the command ends)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypr.runtime import proc
from hypr.runtime.base import Handle

HANDLE = "handle.json"
EXIT_CODE = "exit_code"


def save(state_dir: Path, handle: Handle) -> None:
    (state_dir / HANDLE).write_text(json.dumps(handle.__dict__))


def adopt(state_dir: Path) -> Handle | None:
    """The recorded process if it still runs (a reused pid has another start time), else None."""
    try:
        handle = Handle(**json.loads((state_dir / HANDLE).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return handle if proc.alive(handle.pid, handle.start_time) else None


def exit_code(state_dir: Path) -> int | None:
    try:
        return int((state_dir / EXIT_CODE).read_text())
    except (FileNotFoundError, ValueError):
        return None  # not written yet (or still empty while a VM runs)


def running(handle: Handle) -> bool:
    """The supervisor still runs (the same process that was recorded)."""
    return proc.alive(handle.pid, handle.start_time)


def status(state_dir: Path, handle: Handle) -> tuple[bool, int | None]:
    if running(handle):
        return True, None
    return False, exit_code(state_dir)


def remove_state(state_dir: Path, errors: list[str]) -> None:
    """The last step of every delete(): the state directory goes; "already gone" is success, other failures are
    collected with the rest."""
    try:
        shutil.rmtree(state_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"remove {state_dir}: {exc}")
