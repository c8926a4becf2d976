"""`hypr stats`'s columns, computed as the docker CLI's formatter does from one stats sample."""

from __future__ import annotations

from hypr.cli.stats import bytes_size, human_size, row


def test_sizes_are_go_units() -> None:
    assert human_size(0) == "0B" and human_size(1234) == "1.23kB" and human_size(648) == "648B"
    assert bytes_size(1536 * 1024) == "1.5MiB" and bytes_size(8 * 2**30) == "8GiB"


def test_a_sample_gives_docker_s_columns() -> None:
    sample = {
        "id": "a" * 64, "name": "/web", "pids_stats": {"current": 3},
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000}, "system_cpu_usage": 2_000_000_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 1_000_000_000},
        "memory_stats": {"usage": 3 * 2**20, "limit": 100 * 2**20, "stats": {"inactive_file": 2**20}},
        "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 500}, "eth1": {"rx_bytes": 234, "tx_bytes": 148}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 4096}, {"op": "Write", "value": 0}]},
    }  # fmt: skip
    assert row(sample) == ("a" * 12, "web", "0.40%", "2MiB / 100MiB", "2.00%", "1.23kB / 648B", "4.1kB / 0B", "3")
    assert row(sample, full_id=True)[0] == "a" * 64


def test_a_stopped_workload_s_zeroed_sample() -> None:
    zero = {"id": "b" * 64, "name": "/off", "pids_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}},
            "memory_stats": {}, "blkio_stats": {}, "networks": {}}  # fmt: skip
    assert row(zero)[2:] == ("0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0")
