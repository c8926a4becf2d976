"""Carrying a plan out through the API. Each step is one daemon call (itself one transaction), in order: networks,
then workloads in start order. On a failure `up` stops at once and says which step failed; what was made so far
stays, labelled, so a second `up` picks up from there and `down` removes it. A workload that was created but could
not start is removed again, so no half-made workload is left for a later `up` to mistake for a finished one.
`down` goes on past failures and reports them all at the end; "already gone" counts as success.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Protocol

from hypr.client import Client
from hypr.compose.errors import ComposeError
from hypr.compose.plan import DownPlan, ServiceStep, UpPlan
from hypr.errors import HyprError, NotFound, Unavailable
from hypr.models import BUILTIN_IMAGES


class Progress(Protocol):
    def begin(self, kind: str, name: str, verb: str) -> None: ...

    def end(self, kind: str, name: str, verb: str, seconds: float) -> None: ...

    def fail(self, kind: str, name: str, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


class Silent:
    def begin(self, kind: str, name: str, verb: str) -> None:
        pass

    def end(self, kind: str, name: str, verb: str, seconds: float) -> None:
        pass

    def fail(self, kind: str, name: str, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


@contextmanager
def _step(progress: Progress, kind: str, name: str, doing: str, done: str) -> Iterator[None]:
    started = time.monotonic()
    progress.begin(kind, name, doing)
    try:
        yield
    except Unavailable:
        raise
    except HyprError as exc:
        progress.fail(kind, name, exc.message)
        raise ComposeError(f"{kind} {name}: {exc.message}") from exc
    progress.end(kind, name, done, time.monotonic() - started)


def _create_and_start(client: Client, step: ServiceStep, progress: Progress) -> None:
    name = step.service.container_name
    with _step(progress, "Container", name, "Creating", "Created"):
        workload_id = client.create_container(step.body, name)
    with _step(progress, "Container", name, "Starting", "Started"):
        try:
            client.start(workload_id)
        except HyprError:
            client.remove(workload_id, force=True)
            raise


def _pull_images(client: Client, plan: UpPlan, progress: Progress) -> None:
    """Before anything is made, as compose does: each image a new workload needs, by its service's pull_policy
    (`missing`: only when not there; `always`; `never`: a missing image is an error)."""
    done: set[str] = set()
    for step in plan.services:
        image, policy = step.service.image, step.service.pull_policy
        if step.action not in ("create", "recreate") or image in done or image in BUILTIN_IMAGES:
            continue
        if image.startswith("/"):
            continue
        done.add(image)
        if policy != "always":
            try:
                client.image(image)
                continue
            except NotFound:
                if policy == "never":
                    raise ComposeError(
                        f"service {step.service.name}: image {image} is missing and pull_policy is never"
                    ) from None
        with _step(progress, "Image", image, "Pulling", "Pulled"):
            for _message in client.pull(image):
                pass


def up(client: Client, plan: UpPlan, progress: Progress) -> None:
    for message in plan.warnings:
        progress.warn(message)
    _pull_images(client, plan, progress)
    if plan.remove_orphans:
        for orphan in plan.orphans:
            with _step(progress, "Container", orphan, "Removing", "Removed"):
                _remove_workload(client, orphan)
    for net in plan.networks:
        if net.action == "create":
            with _step(progress, "Network", net.spec.name, "Creating", "Created"):
                client.create_network(net.body)
    for step in plan.services:
        name = step.service.container_name
        if step.action == "running":
            progress.end("Container", name, "Running", 0.0)
        elif step.action == "start":
            with _step(progress, "Container", name, "Starting", "Started"):
                client.start(name)
        elif step.action == "recreate":
            with _step(progress, "Container", name, "Recreate", "Recreated"):
                _remove_workload(client, step.existing_id or name)
            _create_and_start(client, step, progress)
        else:
            _create_and_start(client, step, progress)


def _remove_workload(client: Client, ref: str) -> None:
    with suppress(NotFound):
        client.remove(ref, force=True)


def down(client: Client, plan: DownPlan, progress: Progress) -> None:
    for message in plan.warnings:
        progress.warn(message)
    failures: list[str] = []

    def attempt(kind: str, name: str, action: Callable[[], None]) -> None:
        try:
            with _step(progress, kind, name, "Removing", "Removed"), suppress(NotFound):
                action()
        except ComposeError as exc:
            failures.append(exc.message)

    for workload in plan.workloads:
        attempt("Container", workload, partial(client.remove, workload, force=True))
    for network in plan.networks:
        attempt("Network", network, partial(client.remove_network, network))
    if failures:
        raise ComposeError("down did not finish:\n  " + "\n  ".join(failures))
