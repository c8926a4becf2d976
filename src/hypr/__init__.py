"""hypr: Docker-compatible networking for microVMs and sandboxes.

The public surface is small on purpose: the client, the value types it hands back, and the errors. Everything else
(daemon, services, reconcilers, runtimes) is internal and may change.
"""

from hypr.client import Client
from hypr.errors import Conflict, Forbidden, HyprError, InvalidParameter, KernelError, NotFound, Unavailable
from hypr.models import Endpoint, Network, PortMapping, Workload

__version__ = "0.1.0"

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
