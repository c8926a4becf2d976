"""Progress lines like docker compose's: one per network or workload, with its timing.

`tty`:   ` ✔ Network demo_frontend   Created    0.1s` once each step ends (failures with ✘)
`plain`: ` Network demo_frontend  Creating` / ` Network demo_frontend  Created` (docker compose --progress plain)
`quiet`: nothing but warnings. `auto` is `tty` on a terminal, else `quiet`.
"""

from __future__ import annotations

from typing import TextIO

from hypr.compose.apply import Progress, Silent

MODES = ("auto", "tty", "plain", "quiet")


class Lines:
    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out, self.tty = out, tty

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def begin(self, kind: str, name: str, verb: str) -> None:
        if not self.tty:
            self._write(f" {kind} {name}  {verb}")

    def end(self, kind: str, name: str, verb: str, seconds: float) -> None:
        if self.tty:
            self._write(f" \033[32m✔\033[0m {f'{kind} {name}':<40} \033[34m{verb:<10}\033[0m {seconds:5.1f}s")
        else:
            self._write(f" {kind} {name}  {verb}")

    def fail(self, kind: str, name: str, message: str) -> None:
        if self.tty:
            self._write(f" \033[31m✘\033[0m {f'{kind} {name}':<40} \033[31mError\033[0m      {message}")
        else:
            self._write(f" {kind} {name}  Error {message}")

    def warn(self, message: str) -> None:
        self._write(f"WARN[0000] {message}")


class WarningsOnly(Silent):
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def warn(self, message: str) -> None:
        self.out.write(f"WARN[0000] {message}\n")
        self.out.flush()


def reporter(mode: str, out: TextIO) -> Progress:
    if mode == "auto":
        mode = "tty" if out.isatty() else "quiet"
    if mode == "quiet":
        return WarningsOnly(out)
    return Lines(out, tty=mode == "tty")
