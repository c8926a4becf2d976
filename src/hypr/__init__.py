"""hypr: Docker-compatible networking for microVMs and sandboxes.

The public surface is small on purpose: the client, the value types it hands back, and the errors. Everything else
(daemon, services, reconcilers, runtimes) is internal and may change.

The names are imported when first used (PEP 562): `import hypr.cli.main` must not pay for the client and the
models before a command needs them.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: `hypr` is the first import of every `hypr` command (hypr.cli.entry)
if TYPE_CHECKING:
    from typing import Any

    from hypr.client import Client
    from hypr.errors import Conflict, Forbidden, HyprError, InvalidParameter, KernelError, NotFound, Unavailable
    from hypr.models import Endpoint, Network, PortMapping, Workload

__version__ = "0.1.0"

_HOMES = {
    "Client": "hypr.client",
    **dict.fromkeys(
        ("Conflict", "Forbidden", "HyprError", "InvalidParameter", "KernelError", "NotFound", "Unavailable"),
        "hypr.errors",
    ),
    **dict.fromkeys(("Endpoint", "Network", "PortMapping", "Workload"), "hypr.models"),
}

__all__ = [
    "Client",
    "Conflict",
    "Endpoint",
    "Forbidden",
    "HyprError",
    "InvalidParameter",
    "KernelError",
    "Network",
    "NotFound",
    "PortMapping",
    "Unavailable",
    "Workload",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hypr' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
