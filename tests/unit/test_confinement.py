"""Confinement, pure: Docker's HostConfig fields -> Confinement (or Docker's 400), and the OCI config.json a sandbox
is run from. No root, no crun."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from hypr.errors import InvalidParameter
from hypr.models import Confinement, Mount, Network, Snapshot
from hypr.runtime import crun, oci, shim
from hypr.services.confinement import plan_confinement
from hypr.services.workload_plan import plan_workload_create

BRIDGE = Network(
    id="b" * 64, name="bridge", bridge="vbr0", subnet=IPv4Network("10.88.0.0/16"),
    gateway=IPv4Network("10.88.0.0/16").network_address + 1,
)  # fmt: skip
DOCKER_PROFILE = Path("/usr/share/containers/seccomp.json")


def plan(**host_config: Any) -> Confinement:
    return plan_confinement(host_config, "sandbox")


# -- HostConfig -> Confinement -----------------------------------------------------------------------------------


def test_docker_defaults_are_an_empty_confinement() -> None:
    assert plan() == Confinement()
    assert plan(PidsLimit=-1, Memory=0, NanoCpus=0, CapAdd=None, Binds=None, IpcMode="private") == Confinement()


def test_capabilities_are_spelled_as_docker_accepts_them() -> None:
    c = plan(CapAdd=["net_admin", "CAP_SYS_TIME", "NET_ADMIN"], CapDrop=["all"])
    assert c.cap_add == ("CAP_NET_ADMIN", "CAP_SYS_TIME") and c.cap_drop == ("ALL",)


GOOD_OPTIONS = [
    (["seccomp=unconfined"], ("unconfined", None, False)),
    (["seccomp:unconfined"], ("unconfined", None, False)),
    (["no-new-privileges"], ("", True, False)),
    (["no-new-privileges=false"], ("", False, False)),
    (["no-new-privileges:true"], ("", True, False)),
    (["systempaths=unconfined"], ("", None, True)),
    (["apparmor=unconfined", "label=disable"], ("", None, False)),
]


@pytest.mark.parametrize(("options", "expected"), GOOD_OPTIONS)
def test_security_options(options: list[str], expected: tuple[str, bool | None, bool]) -> None:
    c = plan(SecurityOpt=options)
    assert (c.seccomp, c.no_new_privileges, c.unmasked) == expected and c.security_opt == tuple(options)


def test_a_seccomp_profile_arrives_as_json_and_is_kept() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert json.loads(plan(SecurityOpt=["seccomp=" + json.dumps(profile)]).seccomp) == profile


def test_mounts_from_binds_mounts_and_tmpfs() -> None:
    c = plan(
        Binds=["/srv/data:/data:ro", "/srv/logs:/var/log/app:rw,rshared", "/x:/y:cached"],
        Mounts=[
            {"Type": "bind", "Source": "/etc/app", "Target": "/etc/app", "ReadOnly": True,
             "BindOptions": {"NonRecursive": True}},
            {"Type": "tmpfs", "Target": "/cache", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}},
        ],
        Tmpfs={"/run": "rw,size=64m,mode=755"},
    )  # fmt: skip
    assert c.mounts == (
        Mount("bind", "/data", "/srv/data", True, ("rprivate",), create_source=True),
        Mount("bind", "/y", "/x", False, ("rprivate",), create_source=True),
        Mount("tmpfs", "/cache", options=("noexec", "nosuid", "nodev", "size=1048576", "mode=700")),
        Mount("tmpfs", "/run", options=("noexec", "nosuid", "nodev", "rw", "size=64m", "mode=755")),
        Mount("bind", "/etc/app", "/etc/app", True, ("rprivate", "nonrecursive")),
        Mount("bind", "/var/log/app", "/srv/logs", False, ("rshared",), create_source=True),
    )
    assert c.binds[0] == "/srv/data:/data:ro" and c.tmpfs == (("/run", "rw,size=64m,mode=755"),)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"CapAdd": ["CAP_FOO"]}, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({"CapDrop": "NET_RAW"}, "invalid CapDrop: expected a list of strings"),
    ({"Privileged": "yes"}, "invalid Privileged: expected a boolean"),
    ({"SecurityOpt": ["apparmor=docker-default"]}, "security option 'apparmor=docker-default' is not supported"),
    ({"SecurityOpt": ["seccomp=/etc/profile.json"]}, "invalid seccomp profile"),
    ({"SecurityOpt": ["seccomp={}"]}, "expected a JSON object with a defaultAction"),
    ({"SecurityOpt": ["no-new-privileges=maybe"]}, "expected true or false"),
    ({"SecurityOpt": ["bogus"]}, "expected key=value"),
    ({"Binds": ["data:/data"]}, "named volumes are not supported by hypr"),
    ({"Binds": ["/a:/b:z"]}, "mode 'z' is not supported by hypr"),
    ({"Binds": ["/a:relative"]}, "is not an absolute path"),
    ({"Binds": ["/a:/"]}, "the mount point can't be '/'"),
    ({"Binds": ["/a"]}, "invalid volume specification"),
    ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}]}, "volumes are not supported by hypr"),
    ({"Mounts": [{"Type": "npipe", "Target": "/p"}]}, "mount type 'npipe' is not supported"),
    ({"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/p"}]}, "a bind mount needs an absolute Source"),
    ({"Mounts": [{"Type": "bind", "Source": "/a", "Target": "/p", "BindOptions": {"ReadOnlyNonRecursive": True}}]},
     "BindOptions.ReadOnlyNonRecursive is not supported"),
    ({"Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["exec"]]}}]},
     "TmpfsOptions.Options is not supported"),
    ({"Mounts": [{"Type": "bind", "Source": "/a", "Target": "/p", "VolumeOptions": {"NoCopy": True}}]},
     "VolumeOptions is not supported"),
    ({"Tmpfs": {"/run": "size=lots"}}, "malformed tmpfs option 'size=lots'"),
    ({"Tmpfs": {"/run": "suidx"}}, "unknown or malformed tmpfs option 'suidx'"),
    ({"Tmpfs": ["/run"]}, "invalid Tmpfs"),
    ({"Binds": ["/a:/data"], "Tmpfs": {"/data": ""}}, "Duplicate mount point: /data"),
    ({"PidsLimit": "10"}, "invalid PidsLimit"),
    ({"PidMode": "host"}, 'HostConfig.PidMode is not supported by hypr (got "host")'),
    ({"IpcMode": "host"}, "HostConfig.IpcMode is not supported"),
    ({"Devices": [{"PathOnHost": "/dev/kvm"}]}, "HostConfig.Devices is not supported"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "HostConfig.Sysctls is not supported"),
    ({"CgroupnsMode": "host"}, "HostConfig.CgroupnsMode is not supported"),
    # Docker's HostConfig fields hypr neither honours nor refused before (the audit's list), each by name:
    ({"OomScoreAdj": 500}, "HostConfig.OomScoreAdj is not supported by hypr (got 500)"),
    ({"Isolation": "hyperv"}, 'HostConfig.Isolation is not supported by hypr (got "hyperv")'),
    ({"Annotations": {"a": "b"}}, "HostConfig.Annotations is not supported"),
    ({"StorageOpt": {"size": "1G"}}, "HostConfig.StorageOpt is not supported"),
    ({"BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 10}]}, "HostConfig.BlkioWeightDevice is not supported"),
    ({"BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1}]}, "HostConfig.BlkioDeviceReadBps is not supported"),
    ({"BlkioDeviceWriteBps": [{"Path": "/dev/sda", "Rate": 1}]}, "HostConfig.BlkioDeviceWriteBps is not supported"),
    ({"BlkioDeviceReadIOps": [{"Path": "/dev/sda", "Rate": 1}]}, "HostConfig.BlkioDeviceReadIOps is not supported"),
    ({"BlkioDeviceWriteIOps": [{"Path": "/dev/sda", "Rate": 1}]},
     "HostConfig.BlkioDeviceWriteIOps is not supported"),
    ({"CpuRealtimePeriod": 1000}, "HostConfig.CpuRealtimePeriod is not supported"),
    ({"CpuRealtimeRuntime": 1000}, "HostConfig.CpuRealtimeRuntime is not supported"),
    ({"KernelMemory": 1 << 20}, "HostConfig.KernelMemory is not supported"),
    ({"KernelMemoryTCP": 1 << 20}, "HostConfig.KernelMemoryTCP is not supported"),
    ({"CpuCount": 2}, "HostConfig.CpuCount is not supported"),
    ({"CpuPercent": 50}, "HostConfig.CpuPercent is not supported"),
    ({"IOMaximumIOps": 10}, "HostConfig.IOMaximumIOps is not supported"),
    ({"IOMaximumBandwidth": 10}, "HostConfig.IOMaximumBandwidth is not supported"),
]  # fmt: skip


def test_the_defaults_docker_clients_send_are_accepted() -> None:
    """The docker CLI sends every field, at its zero value when not asked for: none of those is refused."""
    plan(OomScoreAdj=0, Isolation="", Annotations=None, StorageOpt=None, BlkioWeightDevice=[], CpuCount=0,
         KernelMemory=0, IOMaximumBandwidth=0, ContainerIDFile="/tmp/cid", ConsoleSize=[24, 80])  # fmt: skip
    plan(Isolation="default")


@pytest.mark.parametrize(("host_config", "message"), BAD)
def test_what_cannot_be_honoured_is_refused_by_name(host_config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        plan(**host_config)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [("Privileged", True), ("CapAdd", ["NET_ADMIN"]), ("CapDrop", ["ALL"]), ("SecurityOpt", ["seccomp=unconfined"]),
     ("ReadonlyRootfs", True), ("Tmpfs", {"/run": ""}), ("Binds", ["/a:/b"]),
     ("Mounts", [{"Type": "tmpfs", "Target": "/t"}]), ("PidsLimit", 10)],
)  # fmt: skip
def test_a_microvm_refuses_every_confinement_field_by_name(key: str, value: Any) -> None:
    with pytest.raises(InvalidParameter, match=f"HostConfig.{key} is not supported with --runtime vm"):
        plan_confinement({key: value}, "vm")


def test_memory_and_cpus_are_kept_as_asked_for_vms_too() -> None:
    c = plan_confinement({"Memory": 512 << 20, "NanoCpus": 1_500_000_000}, "vm")
    assert (c.memory, c.nano_cpus) == (512 << 20, 1_500_000_000)


def test_the_create_body_carries_confinement_into_the_workload() -> None:
    body = {"Image": "busybox", "HostConfig": {"CapDrop": ["NET_RAW"], "ReadonlyRootfs": True, "PidsLimit": 64}}
    workload = plan_workload_create(body, "box", Snapshot(networks=(BRIDGE,))).workload
    assert workload.confinement.cap_drop == ("CAP_NET_RAW",) and workload.confinement.readonly_rootfs
    assert workload.confinement.pids_limit == 64


# -- Confinement -> config.json -----------------------------------------------------------------------------------

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.2"}},
    ],
}  # fmt: skip


DEFAULT = Confinement()


def inputs(c: Confinement = DEFAULT, **extra: Any) -> oci.Inputs:
    defaults: dict[str, Any] = dict(
        workload_id="w1", process=oci.Process(("sh",), ("PATH=/bin",), "/", 1000, 1000, (27,)), hostname="box",
        domainname="", netns="/run/hypr/workloads/w1/netns", rootfs="/run/hypr/workloads/w1/rootfs", host_root=False,
        files={"/etc/hosts": "/s/hosts"}, confinement=c, seccomp_profile=PROFILE, kernel=(6, 1),
    )  # fmt: skip
    defaults.update(extra)
    return oci.Inputs(**defaults)


def by_destination(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in config["mounts"]}


def test_the_default_config_is_dockers_confinement() -> None:
    config = oci.config(inputs())
    linux, process = config["linux"], config["process"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "cgroup", "network"]
    assert linux["namespaces"][-1]["path"] == "/run/hypr/workloads/w1/netns"  # ours, joined by path
    assert process["capabilities"]["bounding"] == list(oci.DEFAULT_CAPABILITIES) and len(oci.DEFAULT_CAPABILITIES) == 14
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["effective"] and process["noNewPrivileges"] is True
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [27]} and process["terminal"] is False
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/devices/virtual/powercap" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == list(oci.READONLY_PATHS)  # not /sys/fs/cgroup: see test_confinement (integration)
    mounts = by_destination(config)
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert mounts["/etc/hosts"] == {"destination": "/etc/hosts", "type": "bind", "source": "/s/hosts",
                                    "options": ["rbind", "rprivate"]}  # fmt: skip
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in linux["resources"]["devices"]
    assert set(linux["resources"]) == {"devices"}  # no limits unless asked
    assert linux["cgroupsPath"] == "/hypr/w1" and config["root"] == {"path": "/run/hypr/workloads/w1/rootfs",
                                                                      "readonly": False}  # fmt: skip
    assert config["hostname"] == "box" and "domainname" not in config


def test_seccomp_is_made_concrete_for_the_arch_kernel_and_capabilities() -> None:
    rules = oci.config(inputs())["linux"]["seccomp"]
    assert rules["defaultAction"] == "SCMP_ACT_ERRNO" and rules["defaultErrnoRet"] == 38
    assert rules["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [(tuple(r["names"]), r["action"]) for r in rules["syscalls"]]
    assert (("arch_prctl",), "SCMP_ACT_ALLOW") in names and (("cacheflush",), "SCMP_ACT_ALLOW") not in names
    assert (("chroot",), "SCMP_ACT_ALLOW") in names and (("chroot",), "SCMP_ACT_ERRNO") not in names  # SYS_CHROOT
    assert (("bpf",), "SCMP_ACT_ALLOW") not in names and (("new_call",), "SCMP_ACT_ALLOW") not in names
    assert rules["syscalls"][1]["args"] == [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]
    dropped = oci.config(inputs(Confinement(cap_drop=("CAP_SYS_CHROOT",))))["linux"]["seccomp"]
    chroot = [r for r in dropped["syscalls"] if r["names"] == ["chroot"]]
    assert chroot == [{"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    arm = oci.seccomp(PROFILE, oci.DEFAULT_CAPABILITIES, "aarch64", (7, 3))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert ["new_call"] in [r["names"] for r in arm["syscalls"]] and ["cacheflush"] in [
        r["names"] for r in arm["syscalls"]
    ]


@pytest.mark.skipif(not DOCKER_PROFILE.exists(), reason="golang-github-containers-common is not installed")
def test_dockers_default_profile_converts() -> None:
    profile = json.loads(DOCKER_PROFILE.read_text())
    rules = oci.seccomp(profile, oci.DEFAULT_CAPABILITIES, "x86_64", (6, 1))
    allowed = {
        n for r in rules["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]
    }
    assert {"read", "clone", "chroot", "arch_prctl"} <= allowed and not {"bpf", "kexec_load", "init_module"} & allowed


@pytest.mark.skipif(not DOCKER_PROFILE.exists(), reason="golang-github-containers-common is not installed")
def test_debians_profile_gets_dockers_rules_for_namespaces_mounts_and_keyrings() -> None:
    profile = oci.as_dockers(json.loads(DOCKER_PROFILE.read_text()))

    def allowed(caps: tuple[str, ...]) -> tuple[set[str], dict[str, Any]]:
        rules = oci.seccomp(profile, caps, "x86_64", (6, 1))["syscalls"]
        plain = {n for r in rules if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}
        return plain, {n: r for r in rules if r.get("errnoRet") == 1 for n in r["names"]}

    plain, eperm = allowed(oci.DEFAULT_CAPABILITIES)
    assert not {"unshare", "setns", "mount", "umount2", "clone", "clone3", "keyctl", "add_key"} & plain
    assert {"unshare", "setns", "mount", "keyctl", "request_key"} <= set(eperm) and "read" in plain
    rules = oci.seccomp(profile, oci.DEFAULT_CAPABILITIES, "x86_64", (6, 1))["syscalls"]
    assert [r["args"][0]["value"] for r in rules if r["names"] == ["clone"]] == [0x7E020000]  # no namespace flags
    admin, eperm = allowed((*oci.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert {"unshare", "setns", "mount", "clone", "clone3"} <= admin and "keyctl" not in admin
    assert {"keyctl", "add_key", "request_key"} <= set(eperm) and not {"unshare", "setns", "mount"} & set(eperm)


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        (Confinement(cap_add=("CAP_NET_ADMIN",)), (*oci.DEFAULT_CAPABILITIES, "CAP_NET_ADMIN")),
        (Confinement(cap_drop=("CAP_NET_RAW", "CAP_MKNOD")),
         tuple(c for c in oci.DEFAULT_CAPABILITIES if c not in ("CAP_NET_RAW", "CAP_MKNOD"))),
        (Confinement(cap_drop=("ALL",), cap_add=("CAP_NET_BIND_SERVICE",)), ("CAP_NET_BIND_SERVICE",)),
        (Confinement(cap_add=("ALL",), cap_drop=("CAP_SYS_ADMIN",)),
         tuple(c for c in oci.CAPABILITIES if c != "CAP_SYS_ADMIN")),
        (Confinement(cap_add=("CAP_NET_RAW",), cap_drop=("CAP_NET_RAW",)), oci.DEFAULT_CAPABILITIES),  # adds win
        (Confinement(privileged=True, cap_drop=("ALL",)), oci.CAPABILITIES),
    ],
)  # fmt: skip
def test_capabilities_follow_dockers_rules(c: Confinement, expected: tuple[str, ...]) -> None:
    assert set(oci.capabilities(c)) == set(expected)


def test_every_capability_is_every_one_hypr_holds() -> None:
    held = tuple(cap for cap in oci.CAPABILITIES if cap != "CAP_SYS_RESOURCE")
    assert oci.capabilities(Confinement(privileged=True), held) == held
    assert "CAP_SYS_RESOURCE" not in oci.capabilities(Confinement(cap_add=("ALL",)), held)


def test_privileged_turns_confinement_off() -> None:
    device = oci.Device("/dev/kvm", "c", 10, 232, 0o660, 0, 108)
    config = oci.config(inputs(Confinement(privileged=True), devices=(device,)))
    linux = config["linux"]
    assert config["process"]["capabilities"]["bounding"] == list(oci.CAPABILITIES)
    assert config["process"]["noNewPrivileges"] is False
    assert "seccomp" not in linux and linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    assert "ro" not in by_destination(config)["/sys"]["options"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert linux["devices"] == [{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232, "fileMode": 0o660,
                                 "uid": 0, "gid": 108}]  # fmt: skip
    kept = oci.config(inputs(Confinement(privileged=True, no_new_privileges=True)))["process"]["noNewPrivileges"]
    assert kept is True


def test_security_options_in_the_config() -> None:
    assert "seccomp" not in oci.config(inputs(Confinement(seccomp="unconfined")))["linux"]
    own = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    rules = oci.config(inputs(Confinement(seccomp=json.dumps(own)), seccomp_profile=None))["linux"]["seccomp"]
    assert rules["defaultAction"] == "SCMP_ACT_ALLOW" and rules["syscalls"][0]["names"] == ["mkdir"]
    linux = oci.config(inputs(Confinement(unmasked=True)))["linux"]
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == [] and "seccomp" in linux
    assert oci.config(inputs(Confinement(no_new_privileges=False)))["process"]["noNewPrivileges"] is False


def test_user_mounts_limits_and_read_only_root() -> None:
    c = Confinement(
        readonly_rootfs=True, memory=256 << 20, nano_cpus=1_500_000_000, pids_limit=100,
        mounts=(Mount("tmpfs", "/dev/shm", options=("size=1m",)), Mount("bind", "/data", "/srv", True, ("rprivate",)),
                Mount("bind", "/one", "/srv/one", True, ("rslave", "nonrecursive"))),
    )  # fmt: skip
    config = oci.config(inputs(c))
    mounts = by_destination(config)
    assert mounts["/dev/shm"] == {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
    assert mounts["/data"]["options"] == ["rbind", "rprivate", "rro"] and mounts["/data"]["source"] == "/srv"
    assert mounts["/one"]["options"] == ["bind", "rslave", "ro"]
    assert [m["destination"] for m in config["mounts"]].count("/dev/shm") == 1
    resources = config["linux"]["resources"]
    assert resources["memory"] == {"limit": 256 << 20, "swap": 512 << 20}
    assert resources["cpu"] == {"quota": 150_000, "period": 100_000} and resources["pids"] == {"limit": 100}
    assert config["root"]["readonly"] is True


def test_the_host_image_is_read_only_with_private_tmp_and_run_and_hides_the_daemon() -> None:
    config = oci.config(inputs(host_root=True, hidden=("/var/lib/hypr", "/run/hypr"), domainname="example.org"))
    mounts = by_destination(config)
    assert mounts["/tmp"]["type"] == "tmpfs" and mounts["/run"]["type"] == "tmpfs"
    assert config["root"]["readonly"] is True and config["domainname"] == "example.org"
    assert config["linux"]["maskedPaths"][-2:] == ["/var/lib/hypr", "/run/hypr"]


def test_process_env_puts_docker_defaults_under_the_workloads() -> None:
    env = oci.process_env({"PATH": "/opt/bin", "A": "1"}, "box", "/home/app")
    assert env == ("PATH=/opt/bin", "HOSTNAME=box", "HOME=/home/app", "A=1")


@pytest.mark.parametrize(
    ("message", "code", "said"),
    [
        ("executable file `nosuch` not found in $PATH: No such file or directory", 127,
         'exec: "nosuch": executable file not found in $PATH'),
        ("open executable: Permission denied", 126, 'exec: "nosuch": permission denied'),
        ("open executable: Operation not permitted", 126, 'exec: "nosuch": is a directory'),
        ("mount `/proc` to `proc`: Operation not permitted", 126, "start nosuch: mount `/proc`"),
    ],
)  # fmt: skip
def test_crun_failures_become_dockers_exit_codes(message: str, code: int, said: str) -> None:
    failure = shim.classify(message, "nosuch")
    assert failure.code == code and failure.message.startswith(said)


def test_compiled_filters_are_kept_per_profile_and_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crun, "_toolchain", lambda: "/usr/bin/crun:1:1")
    docker = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}}}
    other = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["write"]}]}}}
    key = crun.filter_key(docker)
    assert key is not None and key == crun.filter_key(json.loads(json.dumps(docker))) != crun.filter_key(other)
    assert crun.filter_key({"linux": {}}) is None  # unconfined: nothing to compile
    monkeypatch.setattr(crun, "_toolchain", lambda: "/usr/bin/crun:2:2")
    assert crun.filter_key(docker) != key  # an upgraded crun or libseccomp compiles again
    config: dict[str, Any] = {}
    assert not crun.use_cached_filter(config, tmp_path, key) and config == {}
    (tmp_path / f"{key}.bpf").write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f\x00")  # not whole sock_filters
    assert not crun.use_cached_filter(config, tmp_path, key) and config == {}
    state = tmp_path / "state"
    (state / crun.ROOT / "c1").mkdir(parents=True)
    (state / crun.ROOT / "c1" / crun.COMPILED_FILTER).write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f")
    crun.remember_filter(state, "c1", tmp_path, key)
    crun.remember_filter(state, "gone", tmp_path, "other")  # ended already: nothing kept, no error
    assert crun.use_cached_filter(config, tmp_path, key)
    assert config == {"annotations": {crun.FILTER_ANNOTATION: "BgAAAAAA/38="}}
    assert sorted(p.name for p in tmp_path.glob("*.bpf")) == [f"{key}.bpf"]
