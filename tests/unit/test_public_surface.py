"""The names users may import from `hypr`. Changing this list is an API change: do it on purpose."""

import hypr

EXPORTED = {
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
}


def test_exported_names_do_not_drift() -> None:
    assert set(hypr.__all__) == EXPORTED
    for name in hypr.__all__:
        assert getattr(hypr, name) is not None


def test_errors_carry_their_http_status() -> None:
    assert [e.status for e in (hypr.InvalidParameter, hypr.Forbidden, hypr.NotFound, hypr.Conflict)] == [
        400,
        403,
        404,
        409,
    ]
    assert hypr.Unavailable.status == 503 and hypr.KernelError.status == 500
