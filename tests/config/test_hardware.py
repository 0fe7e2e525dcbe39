"""The memory this process may use (the least of available RAM, the cgroup's limit and the
address-space limit) and GPU names in any case."""

import resource

import pytest

from llmcalc.config import hardware
from llmcalc.errors import LLMCalcError


def fake_files(monkeypatch, files):
    monkeypatch.setattr(hardware, "_read", lambda path: files.get(path))


MEMINFO = "MemTotal: 64000000 kB\nMemAvailable:   50000000 kB\n"


def test_cgroup_v2_limit_less_usage(monkeypatch):
    fake_files(
        monkeypatch,
        {
            "/proc/meminfo": MEMINFO,
            "/proc/self/cgroup": "0::/user.slice/job\n",
            "/sys/fs/cgroup/user.slice/job/memory.max": str(8 * 2**30),
            "/sys/fs/cgroup/user.slice/job/memory.current": str(3 * 2**30),
            "/sys/fs/cgroup/user.slice/memory.max": "max",
            "/sys/fs/cgroup/user.slice/memory.current": str(40 * 2**30),
        },
    )
    monkeypatch.setattr(hardware, "_address_space_free", lambda: None)
    assert hardware.free_cpu_bytes() == {
        "available RAM": 50000000 * 1024,
        "cgroup limit": 5 * 2**30,
    }
    assert hardware.free_bytes("cpu") == 5 * 2**30
    assert hardware.free_in_words("cpu") == (5 * 2**30, "cgroup limit")


def test_cgroup_v1_limit_and_its_unlimited_value(monkeypatch):
    files = {
        "/proc/meminfo": MEMINFO,
        "/proc/self/cgroup": "5:cpu:/\n4:memory:/docker/abc\n",
        "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": str(4 * 2**30),
        "/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": str(2**30),
    }
    fake_files(monkeypatch, files)
    monkeypatch.setattr(hardware, "_address_space_free", lambda: None)
    assert hardware.free_bytes("cpu") == 3 * 2**30
    files["/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"] = "9223372036854771712"
    assert hardware.free_cpu_bytes() == {"available RAM": 50000000 * 1024}


def test_address_space_limit_less_the_current_size(monkeypatch):
    fake_files(
        monkeypatch,
        {"/proc/meminfo": MEMINFO, "/proc/self/status": "Name: python\nVmSize:  1000000 kB\n"},
    )
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4 * 10**9, resource.RLIM_INFINITY))
    assert hardware.free_in_words("cpu") == (4 * 10**9 - 1024 * 10**6, "address-space limit")


def test_this_machine_answers_with_a_positive_number():
    free, limit = hardware.free_in_words("cpu")
    assert free >= 0 and limit in ("available RAM", "cgroup limit", "address-space limit")


@pytest.mark.parametrize("name", ["H100", "h100", "Mi300X", "RTX4090"])
def test_gpu_names_in_any_case(name):
    assert hardware.peak_flops_per_second(name, "bf16") > 1e14


def test_an_unknown_gpu_is_named_and_the_known_listed():
    with pytest.raises(LLMCalcError, match="--gpu 'H1000': unknown GPU; known: a100, h100"):
        hardware.peak_flops_per_second("H1000", "bf16")
