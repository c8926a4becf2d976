"""Real images built from Debian packages (nginx, PostgreSQL), pulled from a real registry and run: the first thing
users try (`hypr run nginx -p 8080:80`) and the seed's compose example with real services. Slow the first time on a
machine (mmdebstrap builds the images, then they are cached); marked `slow`, and still run by `make test`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import registry as reg
from tests.integration.harness import Hyprd, run_in, wait_until
from tests.integration.image_fixtures import fill_storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_storage() -> Iterator[Path]:
    storage, _ = fill_storage(["nginx", "postgres"])
    try:
        yield storage
    finally:
        import shutil

        shutil.rmtree(storage.parent, ignore_errors=True)


def curl(hyprd: Hyprd, url: str) -> str:
    return run_in(hyprd.ns, "curl", "-s", "-m", "5", url, rc=None).stdout


def test_nginx_serves_its_default_page_on_the_host(hyprd: Hyprd, real_storage: Path) -> None:
    with reg.registry(hyprd.ns, hyprd.root / "reg", storage=real_storage, readonly=True) as addr:
        hyprd.stop()
        hyprd.env_extra["HYPR_REGISTRY_MIRRORS"] = addr  # `nginx` is docker.io/library/nginx: the mirror has it
        hyprd.start()
        hyprd.cli("run", "-d", "--name", "web", "-p", "8080:80", "nginx", timeout=300)
        wait_until(lambda: "Welcome to nginx!" in curl(hyprd, "http://127.0.0.1:8080/"), "nginx on :8080", timeout=30)
        wait_until(lambda: "GET / HTTP/1.1" in hyprd.cli("logs", "web").stdout, "nginx's access log on stdout")
        hyprd.cli("stop", "-t", "30", "web")  # SIGQUIT, the image's StopSignal: a graceful stop, exit 0
        assert hyprd.cli("inspect", "web").stdout.count('"ExitCode": 0') == 1


COMPOSE = """
name: shop
services:
  web:
    image: {reg}/library/nginx
    ports: ["8080:80"]
    networks: [frontend]
    depends_on: [api]
  api:
    image: {reg}/library/postgres
    command: ["sleep", "infinity"]
    networks: [frontend, backend]
    depends_on: [db]
  db:
    image: {reg}/library/postgres
    networks: [backend]
networks:
  frontend: {{}}
  backend:
    internal: true
"""


def test_the_compose_example_with_real_nginx_and_postgres(hyprd: Hyprd, real_storage: Path, tmp_path: Path) -> None:
    with reg.registry(hyprd.ns, hyprd.root / "reg", storage=real_storage, readonly=True) as addr:
        file = tmp_path / "compose.yml"
        file.write_text(COMPOSE.format(reg=addr))
        out = hyprd.cli("compose", "--progress", "plain", "-f", str(file), "up", "-d", timeout=600)
        assert "Pulled" in out.stdout + out.stderr
    wait_until(lambda: "Welcome to nginx!" in curl(hyprd, "http://127.0.0.1:8080/"), "nginx on :8080", timeout=30)
    query = ("psql", "-h", "db", "-U", "postgres", "-tAc", "select msg from greetings")

    def answered() -> bool:
        return hyprd.cli("exec", "shop-api-1", *query, rc=None).stdout.strip() == "hello from db"

    wait_until(answered, "api to read a row from db:5432", timeout=90, interval=0.5)
    # web is not on backend: neither db's name nor its address is reachable from it.
    import json

    db_ip = json.loads(hyprd.cli("inspect", "shop-db-1").stdout)[0]["NetworkSettings"]["Networks"]["shop_backend"]
    for host in ("db", db_ip["IPAddress"]):
        probe = f"timeout 3 bash -c 'echo > /dev/tcp/{host}/5432' 2>/dev/null && echo open || echo closed"
        assert hyprd.cli("exec", "shop-web-1", "bash", "-c", probe, rc=None).stdout.strip() == "closed", host
    hyprd.cli("compose", "-f", str(file), "down", timeout=120)
