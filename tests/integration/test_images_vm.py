"""Pulled images as microVMs through the daemon: the image becomes a read-only disk, its config is honoured, its
published port answers on the host. Few boots (TCG is slow); the real nginx one is also marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import registry as reg
from tests.integration.harness import Hyprd, run_in, vm_marks, wait_until
from tests.integration.image_fixtures import Registry, fill_storage, images_registry, small_storage

__all__ = ["images_registry", "small_storage"]  # fixtures
pytestmark = vm_marks()
BOOT = 180.0  # seconds: a TCG boot next to other tests on 2 busy cores


def curl(hyprd: Hyprd, url: str) -> str:
    return run_in(hyprd.ns, "curl", "-s", "-m", "5", url, rc=None).stdout


def test_a_pulled_image_runs_as_a_vm_with_its_config_and_port(hyprd: Hyprd, images_registry: Registry) -> None:
    out = hyprd.cli("run", "--rm", "--runtime", "vm", images_registry.ref("configured"), timeout=BOOT)
    assert out.stdout.strip() == "hello from /srv as 1000:1000"
    hyprd.cli(
        "run", "-d", "--name", "vweb", "--runtime", "vm", "-p", "8081:80", images_registry.ref("httpd"), timeout=BOOT
    )
    wait_until(
        lambda: curl(hyprd, "http://127.0.0.1:8081/") == "hello from hypr-httpd\n", "the VM's httpd", timeout=BOOT
    )
    assert hyprd.cli("exec", "vweb", "cat", "/www/index.html").stdout == "hello from hypr-httpd\n"
    disks = list((hyprd.root / "data" / "images").rglob("*.erofs"))
    image_id = json.loads(hyprd.cli("inspect", "vweb").stdout)[0]["Image"]
    assert [d.stem for d in disks if d.stem in image_id] != []
    hyprd.cli("rm", "-f", "vweb")
    hyprd.cli("rmi", images_registry.ref("httpd"))  # the image's disk goes with it
    assert not [d for d in (hyprd.root / "data" / "images").rglob("*.erofs") if d.stem in image_id]


@pytest.mark.slow
def test_real_nginx_as_a_vm_serves_on_the_host(hyprd: Hyprd, tmp_path: Path) -> None:
    storage, _ = fill_storage(["nginx"])
    try:
        with reg.registry(hyprd.ns, hyprd.root / "reg", storage=storage, readonly=True) as addr:
            ref = f"{addr}/library/nginx"
            hyprd.cli("run", "-d", "--name", "vnginx", "--runtime", "vm", "-p", "8080:80", ref, timeout=BOOT)
            wait_until(
                lambda: "Welcome to nginx!" in curl(hyprd, "http://127.0.0.1:8080/"), "nginx in a VM", timeout=BOOT
            )
            hyprd.cli("rm", "-f", "vnginx")
    finally:
        import shutil

        shutil.rmtree(storage.parent, ignore_errors=True)
