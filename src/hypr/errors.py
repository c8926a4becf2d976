"""Errors that cross module boundaries. Each carries the HTTP status the API answers with.

    HyprError                 500  base class; never raised itself
    ├── InvalidParameter      400  the request is malformed or inconsistent
    ├── Forbidden             403  well-formed but not allowed (predefined network, pool overlap, in use)
    ├── NotFound              404  no such network / workload
    ├── Conflict              409  name already taken
    ├── Unavailable           503  the daemon cannot do it now (not running, lock held)
    ├── KernelError           500  netlink, nftables or an OS call failed; the cause is chained
    └── RegistryError         500  a registry could not be reached, or answered something unusable

The message is the text users read, Docker's wording where Docker has one.
"""

from __future__ import annotations


class HyprError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(HyprError):
    status = 400


class Forbidden(HyprError):
    status = 403


class NotFound(HyprError):
    status = 404


class Conflict(HyprError):
    status = 409


class Unavailable(HyprError):
    status = 503


class KernelError(HyprError):
    status = 500


class RegistryError(HyprError):
    status = 500


BY_STATUS: dict[int, type[HyprError]] = {
    cls.status: cls for cls in (InvalidParameter, Forbidden, NotFound, Conflict, Unavailable, KernelError)
}


def from_status(status: int, message: str) -> HyprError:
    """The client side of the mapping: rebuild the error a daemon answered with."""
    return BY_STATUS.get(status, HyprError)(message)
