"""A minimal ctypes binding of libnftables: run one nft script as one transaction.

Why not `nft -f -`: a process per apply costs more than the apply itself at our sizes. Why not Debian's
`nftables` module: it lives outside our venv; five C functions are less code than a sys.path edit.
A context (and its netlink socket) is created per call, so the script always acts on the network namespace of the
calling thread at that moment: the daemon runs inside its own netns, and tests apply from inside throw-away ones.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LIBRARY = "libnftables.so.1"
_NFT_CTX_DEFAULT = 0
_NFT_CTX_OUTPUT_JSON = 1 << 4


class NftError(Exception):
    """libnftables refused a script; the message is its error output (it names line and column)."""


@dataclass(frozen=True)
class _Api:
    lib: ctypes.CDLL

    @classmethod
    def load(cls) -> _Api:
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as exc:
            raise NftError(f"cannot load {LIBRARY}: {exc}") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.restype = None
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.restype = None
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_set_dry_run.restype = None
        lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
        for name in ("nft_run_cmd_from_buffer", "nft_run_cmd_from_filename"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        return cls(lib)


@contextmanager
def _context(api: _Api) -> Iterator[int]:
    ctx = api.lib.nft_ctx_new(_NFT_CTX_DEFAULT)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        api.lib.nft_ctx_buffer_output(ctx)
        api.lib.nft_ctx_buffer_error(ctx)
        yield ctx
    finally:
        api.lib.nft_ctx_free(ctx)


def run(commands: str, *, dry_run: bool = False, json: bool = False) -> str:
    """Run `commands` (nft script syntax) as one transaction; return nft's output (as JSON with `json`, e.g. for
    `list ruleset`). `dry_run` only checks."""
    return _run(commands.encode(), from_file=False, dry_run=dry_run, json=json)


def run_file(path: str, *, dry_run: bool = False) -> str:
    """Like run(), from a file. Errors then name `path:line:column`, which buffer input does not give."""
    return _run(path.encode(), from_file=True, dry_run=dry_run)


def _run(argument: bytes, *, from_file: bool, dry_run: bool, json: bool = False) -> str:
    api = _Api.load()
    with _context(api) as ctx:
        api.lib.nft_ctx_set_dry_run(ctx, dry_run)
        if json:
            api.lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)
        runner = api.lib.nft_run_cmd_from_filename if from_file else api.lib.nft_run_cmd_from_buffer
        rc = runner(ctx, argument)
        output = (api.lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            error = (api.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            raise NftError(error.strip() or f"nft failed with status {rc}")
        return output
