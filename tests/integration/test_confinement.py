"""Isolation, tried as an attacker inside a workload would (issue 13, Part A), and the confinement options.

Every case is a real attempt from inside a running sandbox (`hypr exec`), through a real hyprd: the `busybox`
image and the `host` image (the host's root, read-only: the host's own tools, python3, iptables and nft included).
An attempt passes when it fails for the right reason (a permission, a read-only file system, a path or process that
does not exist), never because the tool is missing. Docker keeps NET_RAW by default and so does hypr: a workload can
open raw sockets (ping works), and a packet it forges is still dropped by `table bridge hypr`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from hypr.client import Client
from hypr.errors import InvalidParameter
from hypr.runtime import crun, oci
from tests.integration.harness import Hyprd, leftover_processes, wait_until

pytestmark = pytest.mark.integration

IMAGES = ("busybox", "host")
# What the tools say when the kernel refuses (util-linux and hostname say "must be superuser/root" on EPERM).
DENIED = ("Operation not permitted", "ermission denied", "Read-only file system", "must be superuser", "must be root")
GONE = ("No such file or directory", "No such process", "can't find", "nonexistent", "not found", "can't open")
DEFAULT_CAPS = sum(1 << oci.CAPABILITIES.index(c) for c in oci.DEFAULT_CAPABILITIES)


def info(hyprd: Hyprd, name: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(hyprd.cli("inspect", name).stdout)[0]
    return found


def host_pid(hyprd: Hyprd, name: str) -> int:
    state = info(hyprd, name)["State"]
    assert isinstance(state, dict)
    return int(state["Pid"])


def inside(hyprd: Hyprd, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return hyprd.cli("exec", name, "sh", "-c", script, rc=None)


def blocked(hyprd: Hyprd, name: str, script: str, reasons: tuple[str, ...]) -> str:
    """The attempt fails, for one of `reasons`; never with 127 (a missing tool proves nothing)."""
    done = inside(hyprd, name, script)
    said = done.stdout + done.stderr
    assert done.returncode not in (0, 127), f"{script!r} was not blocked (rc {done.returncode}): {said}"
    assert any(r in said for r in reasons), f"{script!r} failed for another reason: {said}"
    return said


def status_field(hyprd: Hyprd, name: str, field: str) -> str:
    out = inside(hyprd, name, f"grep '^{field}:' /proc/self/status").stdout
    return out.split(":", 1)[1].strip()


def run(hyprd: Hyprd, name: str, image: str, *flags: str, command: tuple[str, ...] = ("sleep", "601")) -> None:
    hyprd.cli("run", "-d", "--name", name, *flags, image, *command)


# -- what a workload sees ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_no_process_of_the_host_or_another_workload_is_visible(hyprd: Hyprd, image: str) -> None:
    run(hyprd, "wa", image)
    run(hyprd, "wb", image, command=("sleep", "602"))
    listing = inside(hyprd, "wa", 'for d in /proc/[0-9]*; do echo "${d#/proc/} $(tr "\\0" " " < $d/cmdline)"; done')
    processes = dict(line.split(" ", 1) for line in listing.stdout.splitlines() if " " in line)
    assert processes["1"].strip() == "sleep 601"  # /proc/1 is the workload's own init
    assert len(processes) < 8, processes  # its init and this exec's own few processes
    seen = " ".join(processes.values())
    assert "sleep 602" not in seen and "hyprd" not in seen and "shim.py" not in seen and "crun" not in seen
    assert inside(hyprd, "wa", "tr '\\0' ' ' < /proc/1/cmdline").stdout.strip() == "sleep 601"
    other, daemon = host_pid(hyprd, "wb"), hyprd.proc.pid if hyprd.proc else 0
    blocked(hyprd, "wa", f"ls /proc/{other}/", GONE)
    blocked(hyprd, "wa", f"kill -9 {other}", GONE)
    blocked(hyprd, "wa", f"kill -9 {daemon}", GONE)
    assert info(hyprd, "wb")["State"]["Running"] is True  # type: ignore[index]


@pytest.mark.parametrize("image", IMAGES)
def test_no_path_reaches_the_socket_or_the_data_dir(hyprd: Hyprd, image: str) -> None:
    run(hyprd, "wa", image)
    run(hyprd, "wb", image)
    daemon = hyprd.proc.pid if hyprd.proc else 0
    socket, data = hyprd.socket, hyprd.root / "data"
    b_netns = hyprd.root / "run" / "workloads" / str(info(hyprd, "wb")["Id"]) / "netns"
    for path in (socket, data / "hypr.db", b_netns, hyprd.root / "run" / "workloads"):
        blocked(hyprd, "wa", f"ls -d {path}", GONE)
    # The attack: a chroot into hyprd's root. hyprd is not in the workload's PID namespace.
    blocked(hyprd, "wa", f"chroot /proc/{daemon}/root ls {socket}", GONE)
    blocked(hyprd, "wa", f"chroot /proc/1/root ls {socket}", GONE)  # its own root
    blocked(hyprd, "wa", f"nsenter --net={b_netns} true", GONE)
    if image == "host":  # the host's own tools, against the host's real paths
        probe = f'import socket; socket.socket(socket.AF_UNIX).connect("{socket}")'
        blocked(hyprd, "wa", f"python3 -c '{probe}'", ("FileNotFoundError", *GONE))
        assert inside(hyprd, "wa", "ls /tmp /run").stdout.split() == ["/run:", "/tmp:"]  # private and empty


@pytest.mark.parametrize("image", IMAGES)
def test_namespaces_mounts_links_firewall_and_kernel_cannot_be_touched(hyprd: Hyprd, image: str) -> None:
    run(hyprd, "wa", image)
    run(hyprd, "wb", image)
    other = host_pid(hyprd, "wb")
    attempts = [
        (f"nsenter -t {other} -n true", GONE),  # the walk into another workload's network
        ("nsenter --net=/proc/1/ns/net true", DENIED),
        ("nsenter -t 1 -m -u -i -p true", DENIED),
        ("mount -t tmpfs none /tmp", DENIED),
        ("mount -o remount,rw /", DENIED),
        ("umount /etc/hosts", DENIED),
        ("ip link add evil0 type bridge", DENIED),
        ("ip addr add 10.88.250.250/32 dev eth0", DENIED),
        ("ip link set eth0 address 02:00:00:00:00:99", DENIED),
        ("ip route del default", DENIED),
        ("hostname evil", DENIED),
        ("echo evil > /proc/sys/kernel/hostname", DENIED),
        ("echo 1 > /proc/sys/net/ipv4/ip_forward", DENIED),
        ("dmesg", DENIED),
        ("mknod /tmp/disk b 8 0 && head -c1 /tmp/disk", DENIED),  # made (MKNOD, as Docker), never opened
        ("touch /sys/kernel/evil", DENIED),
        ("echo 1300 > /sys/class/net/eth0/mtu", DENIED),
        # The cgroup hierarchies (on a v1 host, each under the tmpfs crun mounts at /sys/fs/cgroup): no limit of its
        # own can be raised, no cgroup made.
        ("d=/sys/fs/cgroup; [ -d $d/pids ] && d=$d/pids; mkdir $d/evil", DENIED),
        ("d=/sys/fs/cgroup; [ -d $d/pids ] && d=$d/pids; echo max > $d/pids.max", DENIED),
        ("unshare -n true", DENIED),
        ("unshare -U -r true", DENIED),  # a user namespace: Docker's profile refuses it without CAP_SYS_ADMIN
        ("mount -t proc proc /tmp", DENIED),
    ]
    if image == "host":
        attempts += [("iptables -L", DENIED), ("nft list ruleset", DENIED), ("touch /etc/evil", DENIED)]
    for script, reasons in attempts:
        blocked(hyprd, "wa", script, reasons)
    # Masked /proc files read as empty.
    assert inside(hyprd, "wa", "wc -c < /proc/timer_list").stdout.strip() == "0"


# (syscall, number on x86_64, arguments): what Docker's profile or the missing capabilities refuse.
SYSCALLS = [
    ("keyctl", 250, "0, 0, 0, 0"), ("add_key", 248, 'b"user", b"k", b"v", 1, -2'), ("bpf", 321, "0, 0, 0"),
    ("perf_event_open", 298, "0, 0, -1, -1, 0"), ("kexec_load", 246, "0, 0, 0, 0"), ("init_module", 175, "0, 0, 0"),
    ("open_by_handle_at", 304, "0, 0, 0"), ("mount", 165, 'b"none", b"/mnt", b"tmpfs", 0, 0'),
    ("unshare(CLONE_NEWNET)", 272, "0x40000000"), ("clock_settime", 227, "0, 0"), ("reboot", 169, "0, 0, 0, 0"),
    ("iopl", 172, "3"), ("syslog", 103, "3, 0, 0"), ("userfaultfd", 323, "0"), ("fsopen", 430, 'b"tmpfs", 0'),
]  # fmt: skip


PROBE = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
         + "; ".join(f"print({name!r}, libc.syscall({number}, {args}), ctypes.get_errno())" for name, number, args in SYSCALLS))  # fmt: skip


def refused(output: str) -> None:
    names = {name for name, _, _ in SYSCALLS}
    said = [line.split() for line in output.splitlines() if line.split(" ", 1)[0] in names]
    assert len(said) == len(SYSCALLS), output
    for name, rc, err in said:
        assert rc == "-1" and int(err) in (1, 38), (name, rc, err)  # EPERM or ENOSYS, never done


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_dangerous_syscalls_fail_with_eperm_or_enosys(hyprd: Hyprd) -> None:
    # The first workload has crun compile the profile; the second gets the filter the daemon kept (crun.py): the
    # init itself and an exec are refused alike in both.
    for name in ("wa", "wb"):
        run(hyprd, name, "host", command=("python3", "-u", "-c", PROBE + "; import time; time.sleep(601)"))
        wait_until(lambda n=name: hyprd.cli("logs", n).stdout.count("\n") >= len(SYSCALLS), f"{name}'s probe")  # type: ignore[misc]
        refused(hyprd.cli("logs", name).stdout)
        refused(hyprd.cli("exec", name, "python3", "-c", PROBE).stdout)
    assert len(list((hyprd.root / "data" / "images" / "seccomp").glob("*.bpf"))) == 1
    bundles = {n: hyprd.root / "run" / "workloads" / str(info(hyprd, n)["Id"]) / "bundle" for n in ("wa", "wb")}
    annotated = {n: crun.FILTER_ANNOTATION in json.loads((b / "config.json").read_text()).get("annotations", {})
                 for n, b in bundles.items()}  # fmt: skip
    assert annotated == {"wa": False, "wb": True}
    keyring = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); print(libc.syscall(250, 0, -3, 0))"
    assert inside(hyprd, "wb", f"python3 -c '{keyring}'").stdout.strip() == "-1"  # not the host's session keyring


def test_raw_sockets_are_dockers_but_a_forged_packet_never_leaves_the_port(hyprd: Hyprd) -> None:
    receiver = textwrap.dedent("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 9999))
        while True:
            data, peer = s.recvfrom(512)
            print(peer[0], data.decode(), flush=True)
    """)
    run(hyprd, "rx", "host", command=("python3", "-c", receiver))
    run(hyprd, "tx", "host")
    run(hyprd, "quiet", "host", "--cap-drop", "NET_RAW")
    rx_ip = info(hyprd, "rx")["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    tx_ip = info(hyprd, "tx")["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    # NET_RAW is kept (Docker's default): ping and raw sockets work inside.
    assert inside(hyprd, "tx", "ping -c1 -W2 10.88.0.1").returncode == 0
    forge = textwrap.dedent(f"""
        import socket, struct
        def checksum(b):
            s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
            s = (s >> 16) + (s & 0xFFFF)
            return ~(s + (s >> 16)) & 0xFFFF
        def packet(src, payload):
            udp = struct.pack("!HHHH", 4444, 9999, 8 + len(payload), 0) + payload
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                               socket.inet_aton(src), socket.inet_aton("{rx_ip}"))
            head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
            return head + udp
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        raw.sendto(packet("10.88.0.250", b"FORGED-IP"), ("{rx_ip}", 0))
        raw.sendto(packet("{tx_ip}", b"RAW-OWN-IP"), ("{rx_ip}", 0))
        eth = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        eth.bind(("eth0", 0))
        rx_mac = bytes.fromhex("{_mac(hyprd, "rx")}")
        eth.send(rx_mac + bytes.fromhex("020000000099") + b"\\x08\\x00" + packet("{tx_ip}", b"FORGED-MAC"))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"GENUINE", ("{rx_ip}", 9999))
        print("sent")
    """)
    done = inside(hyprd, "tx", f"python3 -c '{forge}'")
    assert done.stdout.strip() == "sent", done.stderr  # the forging itself works: NET_RAW is there
    wait_until(lambda: "GENUINE" in hyprd.cli("logs", "rx").stdout, "the genuine datagram")
    log = hyprd.cli("logs", "rx").stdout
    assert f"{tx_ip} GENUINE" in log and f"{tx_ip} RAW-OWN-IP" in log  # raw, but honest: delivered
    assert "FORGED-IP" not in log and "FORGED-MAC" not in log  # dropped by table bridge hypr
    # Without NET_RAW the forging fails even earlier (and so does ping).
    for family in ("socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW", "socket.AF_PACKET, socket.SOCK_RAW"):
        said = blocked(hyprd, "quiet", f"python3 -c 'import socket; socket.socket({family})'", DENIED)
        assert "PermissionError" in said
    assert status_field(hyprd, "quiet", "CapEff") == f"{DEFAULT_CAPS & ~(1 << 13):016x}"
    blocked(hyprd, "quiet", "ping -c1 -W2 10.88.0.1", DENIED)  # iputils' ping holds cap_net_raw: exec refused


def _mac(hyprd: Hyprd, name: str) -> str:
    return str(info(hyprd, name)["NetworkSettings"]["MacAddress"]).replace(":", "")  # type: ignore[index]


# -- the defaults and the options ------------------------------------------------------------------------------------


def test_dockers_defaults_inside(hyprd: Hyprd) -> None:
    run(hyprd, "box", "busybox")
    assert status_field(hyprd, "box", "CapEff") == f"{DEFAULT_CAPS:016x}" == f"{0xA80425FB:016x}"
    assert status_field(hyprd, "box", "NoNewPrivs") == "1" and status_field(hyprd, "box", "Seccomp") == "2"
    mounts = inside(hyprd, "box", "cat /proc/self/mountinfo").stdout
    assert re.search(r" /sys ro,", mounts) and re.search(r" /proc/sys ro,", mounts)
    assert inside(hyprd, "box", "readlink /proc/self/ns/pid").stdout != os.readlink("/proc/self/ns/pid")
    assert inside(hyprd, "box", "cat /proc/self/cgroup").stdout.count(":/\n") >= 5  # its own cgroup namespace
    host_config = info(hyprd, "box")["HostConfig"]
    assert host_config["Privileged"] is False and host_config["CapAdd"] is None  # type: ignore[index]


def test_privileged_turns_confinement_off(hyprd: Hyprd) -> None:
    run(hyprd, "root", "busybox", "--privileged")
    assert status_field(hyprd, "root", "Seccomp") == "0" and status_field(hyprd, "root", "NoNewPrivs") == "0"
    held = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines() if "CapBnd" in line)
    assert status_field(hyprd, "root", "CapEff") == held  # every capability hypr itself holds
    assert inside(hyprd, "root", "mount -t tmpfs none /tmp && ip link add priv0 type bridge").returncode == 0
    assert inside(hyprd, "root", "wc -c < /proc/timer_list").stdout.strip() != "0"  # nothing masked
    device = next(d.path for d in crun.host_devices() if d.type == "c")  # the host's devices, as Docker gives them
    assert inside(hyprd, "root", f"test -c {device}").returncode == 0
    run(hyprd, "plain", "busybox")
    assert inside(hyprd, "plain", f"test -e {device}").returncode == 1
    assert info(hyprd, "root")["HostConfig"]["Privileged"] is True  # type: ignore[index]
    # Still its own PID namespace: privileged is not host mode.
    assert inside(hyprd, "root", "tr '\\0' ' ' < /proc/1/cmdline").stdout.strip() == "sleep 601"


def test_capabilities_added_and_dropped(hyprd: Hyprd) -> None:
    run(hyprd, "admin", "busybox", "--cap-add", "NET_ADMIN")
    assert inside(hyprd, "admin", "ip link add mine0 type bridge").returncode == 0  # its own network namespace
    blocked(hyprd, "admin", "mount -t tmpfs none /tmp", DENIED)
    run(hyprd, "bare", "busybox", "--cap-drop", "ALL", "--cap-add", "CHOWN")
    assert status_field(hyprd, "bare", "CapEff") == f"{1 << 0:016x}"
    blocked(hyprd, "bare", "touch /x && chmod 600 /x && mknod /tmp/n c 1 3", DENIED)
    host_config = info(hyprd, "bare")["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["CapAdd"] == ["CAP_CHOWN"]  # type: ignore[index]


def test_security_options(hyprd: Hyprd, tmp_path: Path) -> None:
    run(hyprd, "loose", "busybox", "--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges=false",
        "--security-opt", "systempaths=unconfined")  # fmt: skip
    assert status_field(hyprd, "loose", "Seccomp") == "0" and status_field(hyprd, "loose", "NoNewPrivs") == "0"
    assert inside(hyprd, "loose", "wc -c < /proc/timer_list").stdout.strip() != "0"
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}  # fmt: skip
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    run(hyprd, "strict", "busybox", "--security-opt", f"seccomp={tmp_path / 'profile.json'}")
    blocked(hyprd, "strict", "mkdir /tmp/d", DENIED)
    assert inside(hyprd, "strict", "touch /tmp/f").returncode == 0
    opts = info(hyprd, "loose")["HostConfig"]["SecurityOpt"]  # type: ignore[index]
    assert opts == ["seccomp=unconfined", "no-new-privileges=false", "systempaths=unconfined"]


def test_read_only_root_tmpfs_and_bind_mounts(hyprd: Hyprd, tmp_path: Path) -> None:
    shared, readonly = tmp_path / "shared", tmp_path / "readonly"
    readonly.mkdir()
    (readonly / "file").write_text("from the host\n")
    run(hyprd, "ro", "busybox", "--read-only", "--tmpfs", "/scratch:size=1m", "-v", f"{shared}:/shared",
        "--mount", f"type=bind,source={readonly},target=/config,readonly",
        "--mount", "type=tmpfs,target=/cache,tmpfs-size=2m")  # fmt: skip
    blocked(hyprd, "ro", "touch /evil", DENIED)
    blocked(hyprd, "ro", "echo x > /config/file", DENIED)
    assert inside(hyprd, "ro", "cat /config/file").stdout == "from the host\n"
    assert inside(hyprd, "ro", "touch /scratch/a /cache/b && echo hi > /shared/out").returncode == 0
    assert (shared / "out").read_text() == "hi\n"  # -v made the missing host directory, as Docker does
    df = inside(hyprd, "ro", "df -k /scratch /cache").stdout.split("\n")
    assert " 1024 " in df[1] and " 2048 " in df[2]
    host_config = info(hyprd, "ro")["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True and host_config["Tmpfs"] == {"/scratch": "size=1m"}  # type: ignore[index]
    assert host_config["Binds"] == [f"{shared}:/shared"] and host_config["Mounts"][0]["ReadOnly"] is True  # type: ignore[index]
    refused = hyprd.cli("run", "-d", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", rc=125)
    assert "bind source path does not exist: /no/such/dir" in refused.stderr


def test_user_limits_and_exec_keep_the_confinement(hyprd: Hyprd) -> None:
    run(hyprd, "nobody", "busybox", "--user", "65534", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "12")
    assert inside(hyprd, "nobody", "id -u").stdout.strip() == "65534"
    assert status_field(hyprd, "nobody", "CapEff") == "0000000000000000"  # a non-root user keeps none
    cgroup = "/sys/fs/cgroup"
    assert inside(hyprd, "nobody", f"cat {cgroup}/memory/memory.limit_in_bytes").stdout.strip() == str(64 << 20)
    assert inside(hyprd, "nobody", f"cat {cgroup}/cpu/cpu.cfs_quota_us").stdout.strip() == "50000"
    assert inside(hyprd, "nobody", f"cat {cgroup}/pids/pids.max").stdout.strip() == "12"
    forks = inside(hyprd, "nobody", "for i in $(seq 20); do sleep 30 & done; wait")
    assert "can't fork" in forks.stderr or "Resource temporarily unavailable" in forks.stderr
    host_config = info(hyprd, "nobody")["HostConfig"]
    assert (host_config["Memory"], host_config["NanoCpus"], host_config["PidsLimit"]) == (  # type: ignore[index]
        64 << 20, 500_000_000, 12)  # fmt: skip
    # An exec is as confined as the workload: same user, seccomp and no_new_privs; the command's own exit code.
    assert status_field(hyprd, "nobody", "Seccomp") == "2" and status_field(hyprd, "nobody", "NoNewPrivs") == "1"
    assert hyprd.cli("exec", "nobody", "sh", "-c", "exit 9", rc=9).returncode == 9
    assert hyprd.cli("exec", "nobody", "no-such-tool", rc=127).returncode == 127


def test_pause_unpause_and_top_go_through_crun_and_outlive_the_daemon(hyprd: Hyprd) -> None:
    run(hyprd, "frozen", "busybox", command=("sh", "-c", "while :; do echo tick; sleep 0.2; done"))
    workload = str(info(hyprd, "frozen")["Id"])
    freezer = next(p for p in (Path(f"/sys/fs/cgroup/freezer/hypr/{workload}/freezer.state"),
                                Path(f"/sys/fs/cgroup/hypr/{workload}/cgroup.freeze")) if p.exists())  # fmt: skip
    hyprd.cli("pause", "frozen")
    assert freezer.read_text().strip() in ("FROZEN", "1")
    assert info(hyprd, "frozen")["State"]["Status"] == "paused"  # type: ignore[index]
    assert "is paused" in hyprd.cli("exec", "frozen", "true", rc=1).stderr
    hyprd.kill9()  # crun's state, not the daemon's memory, holds the pause
    hyprd.start()
    hyprd.cli("unpause", "frozen")
    assert freezer.read_text().strip() in ("THAWED", "0")
    listing = hyprd.cli("top", "frozen", "-o", "pid,args").stdout.splitlines()
    assert listing[0].split() == ["PID", "COMMAND"] and any("while :" in row for row in listing[1:])
    assert "is not paused" in hyprd.cli("unpause", "frozen", rc=1).stderr


def test_fields_that_cannot_be_honoured_are_refused_by_name(hyprd: Hyprd) -> None:
    bad = [
        ({"CapAdd": ["CAP_BOGUS"]}, 'unknown capability: "CAP_BOGUS"'),
        ({"SecurityOpt": ["apparmor=docker-default"]}, "security option 'apparmor=docker-default' is not supported"),
        ({"Binds": ["named:/data"]}, "named volumes are not supported"),
        ({"Mounts": [{"Type": "volume", "Target": "/v"}]}, "volumes are not supported"),
        ({"PidMode": "host"}, "HostConfig.PidMode is not supported"),
        ({"Devices": [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm"}]}, "HostConfig.Devices"),
        ({"Runtime": "vm", "Binds": ["/tmp:/data"]}, "HostConfig.Binds is not supported with --runtime vm"),
        ({"Runtime": "vm", "Privileged": True}, "HostConfig.Privileged is not supported with --runtime vm"),
    ]
    with Client(f"unix://{hyprd.socket}") as client:
        for host_config, message in bad:
            with pytest.raises(InvalidParameter) as caught:
                client.create_container({"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config})
            assert message in caught.value.message
        assert client.containers(all=True) == []
    refused = hyprd.cli("run", "--runtime", "vm", "-v", "/tmp:/data", "busybox", "true", rc=125)
    assert "HostConfig.Binds is not supported with --runtime vm" in refused.stderr


def test_confined_workloads_are_readopted_and_an_unsupervised_one_is_ended(hyprd: Hyprd) -> None:
    run(hyprd, "kept", "busybox", "--cap-drop", "NET_RAW")
    run(hyprd, "orphan", "busybox")
    hyprd.kill9()
    hyprd.start()
    assert status_field(hyprd, "kept", "CapEff") == f"{DEFAULT_CAPS & ~(1 << 13):016x}"
    hyprd.cli("stop", "-t", "1", "kept")
    assert info(hyprd, "kept")["State"]["ExitCode"] == 137  # type: ignore[index]
    # Its supervisor killed on its own: nobody could record its exit, so the next daemon ends the container.
    orphan_id = str(info(hyprd, "orphan")["Id"])
    handle = json.loads((hyprd.root / "run" / "workloads" / orphan_id / "handle.json").read_text())
    init = host_pid(hyprd, "orphan")
    hyprd.kill9()
    os.kill(handle["pid"], signal.SIGKILL)
    hyprd.start()
    wait_until(lambda: not Path(f"/proc/{init}").exists(), "the unsupervised container to be ended")
    assert info(hyprd, "orphan")["State"]["Running"] is False  # type: ignore[index]
    assert not [p for p in leftover_processes(hyprd.root) if p == init]
