"""Images: what hypr adds over doing the same by hand, measured in one run (medians).

1. pull + unpack of an image from a local registry: `hypr pull` vs `skopeo copy` + `umoci unpack` by hand
   (goal: hypr's bookkeeping adds <= 10%); a second pull of the cached image (goal: <= 100 ms, API round trip);
2. `run -d` until the image's port answers: a sandbox vs a bare `unshare` + overlay mount + chroot of the same
   rootfs in a prepared namespace (goal: hypr adds <= 150 ms). The microVM case (the same QEMU command line by
   hand, disk already built; goal: hypr adds <= 100 ms) is bench/vmboot.py: every VM boots from an image disk;
3. disk: two images sharing a base layer store that layer's blob once.

Runs as root inside throw-away namespaces with its own hyprd and registry (tests/integration/registry.py builds the
images, cached per machine); removes everything after.
    .venv/bin/python bench/images.py [--image nginx|httpd] [--samples 5]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration import registry as reg
from tests.integration.harness import Hyprd, netns, run_in, sh

PORTS = {"nginx": 80, "httpd": 80}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def wait_port(ns: str, host: str, port: int, timeout: float = 60.0) -> None:
    """Poll a TCP connect from inside `ns` (a tiny in-process loop: no process start per try)."""
    script = (
        "import socket,sys,time\nd=time.monotonic()+float(sys.argv[3])\nwhile True:\n"
        " try:\n  socket.create_connection((sys.argv[1],int(sys.argv[2])),0.2).close();break\n"
        " except OSError:\n  time.sleep(0.002)\n  assert time.monotonic()<d\n"
    )
    run_in(ns, sys.executable, "-c", script, host, str(port), str(timeout), timeout=timeout + 5)


def report(label: str, ours: float, base: float, goal: str, met: bool) -> None:
    print(f"{label:<44} hypr {ours:9.1f} ms   by hand {base:9.1f} ms   {goal:<22} {'met' if met else 'NOT met'}")


def bench_pull(daemon: Hyprd, ns: str, ref: str, work: Path, samples: int) -> None:
    layout, bundle = work / "layout", work / "bundle"

    def clean_by_hand() -> None:  # untimed, as hypr's `rmi -f` between its samples
        shutil.rmtree(layout, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)

    def by_hand() -> None:
        run_in(ns, "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:x", timeout=600)
        sh("umoci", "unpack", "--image", f"{layout}:x", str(bundle), timeout=600)

    hand, ours, cli = [], [], []
    with daemon.client() as client:
        for _ in range(samples):
            clean_by_hand()
            hand.append(timed(by_hand))
            daemon.cli("rmi", "-f", ref, rc=None)
            ours.append(timed(lambda: list(client.pull(ref))))
            daemon.cli("rmi", "-f", ref, rc=None)
            cli.append(timed(lambda: daemon.cli("pull", "-q", ref, timeout=600)))
        cached = statistics.median(timed(lambda: list(client.pull(ref))) for _ in range(max(samples, 10)))
    h, o = statistics.median(hand), statistics.median(ours)
    report("pull + unpack (API)", o, h, "<= 1.10x", o <= h * 1.10)
    print(f"{'':<44} ratio {o / h:.3f}; through the hypr CLI {statistics.median(cli):.1f} ms")
    print(
        f"{'second pull (cached), API':<44} {cached:9.1f} ms   goal <= 100 ms: {'met' if cached <= 100 else 'NOT met'}"
    )


def bench_run(daemon: Hyprd, ns: str, ref: str, port: int, samples: int, work: Path, runtime: str) -> None:
    image = daemon.client().image(ref)
    rootfs = daemon.root / "data" / "images" / "rootfs" / image["Id"].removeprefix("sha256:")
    argv = [*(image["Config"]["Entrypoint"] or []), *(image["Config"]["Cmd"] or [])]
    ours, cli = [], []
    with daemon.client() as client:
        for i in range(samples):
            body = {
                "Image": ref,
                "HostConfig": {"Runtime": runtime, "PortBindings": {f"{port}/tcp": [{"HostPort": str(18000 + i)}]}},
            }

            def run(body: dict[str, object] = body, host_port: int = 18000 + i, name: str = f"bench{i}") -> None:
                client.start(client.create_container(body, name))
                wait_port(ns, "127.0.0.1", host_port)

            ours.append(timed(run))
            client.remove(f"bench{i}", force=True)

            def run_cli(host_port: int = 18100 + i, name: str = f"cli{i}") -> None:
                daemon.cli("run", "-d", "--name", name, "--runtime", runtime, "-p", f"{host_port}:{port}", ref)
                wait_port(ns, "127.0.0.1", host_port)

            cli.append(timed(run_cli))
            client.remove(f"cli{i}", force=True)
    hand = [bare_sandbox(ns, rootfs, argv, port, work) for _ in range(samples)]
    o, h = statistics.median(ours), statistics.median(hand)
    report(f"run to port answering ({runtime}, API)", o, h, "adds <= 150 ms", o - h <= 150)
    print(f"{'':<44} hypr adds {o - h:.1f} ms; through the hypr CLI {statistics.median(cli):.1f} ms")


def bare_sandbox(ns: str, rootfs: Path, argv: list[str], port: int, work: Path) -> float:
    """The baseline: a prepared network namespace with an address; then unshare, overlay mount, chroot, exec.
    Returns the milliseconds from the unshare to the port answering (the preparation and the clean-up untimed)."""
    inner = f"{ns}-bare"
    sh("ip", "netns", "add", inner)
    try:
        sh("ip", "-n", ns, "link", "add", "bare0", "type", "veth", "peer", "name", "eth0", "netns", inner)
        sh("ip", "-n", ns, "addr", "add", "198.19.9.1/30", "dev", "bare0")
        sh("ip", "-n", ns, "link", "set", "bare0", "up")
        sh("ip", "-n", inner, "addr", "add", "198.19.9.2/30", "dev", "eth0")
        sh("ip", "-n", inner, "link", "set", "eth0", "up")
        sh("ip", "-n", inner, "link", "set", "lo", "up")
        upper = Path(tempfile.mkdtemp(dir=work))
        script = (
            'set -e; cd "$1"; mkdir -p u w m; mount -t overlay overlay -o "lowerdir=$2,upperdir=u,workdir=w" m;'
            ' mount -t proc proc m/proc; shift 2; exec chroot m "$@"'
        )
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", inner, "unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script,
             "sh", str(upper), str(rootfs), *argv],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(ns, "198.19.9.2", port)
            return (time.perf_counter() - start) * 1000
        finally:
            proc.kill()
            proc.wait()
            subprocess.run(["umount", "-R", "-l", str(upper / "m")], check=False, capture_output=True)
            shutil.rmtree(upper, ignore_errors=True)
    finally:
        sh("ip", "-n", ns, "link", "del", "bare0", rc=None)
        sh("ip", "netns", "del", inner, rc=None)


def bench_disk(daemon: Hyprd, refs: dict[str, str]) -> None:
    blobs = daemon.root / "data" / "images" / "oci" / "blobs" / "sha256"
    daemon.cli("pull", "-q", refs["alpha"])
    daemon.cli("pull", "-q", refs["beta"])
    alpha, beta = (reg.build_images([n])[n].manifest()["layers"] for n in ("alpha", "beta"))
    digests = {layer["digest"].removeprefix("sha256:") for layer in (*alpha, *beta)}
    stored = sum((blobs / d).stat().st_size for d in digests)
    naive = sum(layer["size"] for layer in (*alpha, *beta))
    once = alpha[0]["digest"] == beta[0]["digest"] and (blobs / alpha[0]["digest"].removeprefix("sha256:")).is_file()
    print(f"{'disk: two images sharing a base layer':<44} layer blobs {stored / 1e6:.2f} MB vs {naive / 1e6:.2f} MB"
          f" stored per image; base layer stored once: {'met' if once else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="nginx", choices=sorted(PORTS))
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    images = reg.build_images([args.image, "alpha", "beta"])
    work = Path(tempfile.mkdtemp(prefix="hypr-bench-images-"))
    try:
        with netns("hyprbench") as ns, reg.serving(ns, work / "reg", images) as (_addr, refs):
            (work / "hyprd").mkdir()
            daemon = Hyprd(ns=ns, root=work / "hyprd")
            daemon.start()
            try:
                ref = refs[args.image]
                print(f"image {args.image} ({ref}), {args.samples} samples, medians")
                bench_pull(daemon, ns, ref, work, args.samples)
                bench_run(daemon, ns, ref, PORTS[args.image], args.samples, work, "sandbox")
                bench_disk(daemon, refs)
            finally:
                for c in daemon.client().containers(all=True):
                    daemon.client().remove(c["Id"], force=True)
                daemon.stop()
    finally:
        subprocess.run(["umount", "-R", "-l", str(work)], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
