"""The hardware: dense (no sparsity) peak tensor throughput per GPU and dtype, in TFLOP/s, from each
vendor's datasheet, and the memory a device has free now.

Peaks are what the silicon can do; sustained training reaches a fraction of them (MFU). These are
datasheet numbers, not measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llmcalc.errors import LLMCalcError, ResourceError, quote


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_tflops: dict[str, float]  # dtype -> dense TFLOP/s
    source: str


GPUS = {
    gpu.name: gpu
    for gpu in (
        Gpu(
            "a100",
            {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
            "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB)",
        ),
        Gpu(
            "h100",
            {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "tf32": 494.7, "fp32": 66.9},
            "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM; sparsity figures halved)",
        ),
        Gpu(
            "h200",
            {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "tf32": 494.7, "fp32": 66.9},
            "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM; sparsity figures halved)",
        ),
        Gpu(
            "b200",
            {"bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0, "tf32": 1100.0},
            "NVIDIA DGX B200 datasheet, per GPU (sparsity figures halved)",
        ),
        Gpu(
            "rtx4090",
            {"bf16": 165.2, "fp16": 165.2, "fp8": 330.3, "tf32": 82.6},
            "NVIDIA Ada Lovelace architecture whitepaper, appendix A (FP32 accumulate)",
        ),
        Gpu(
            "mi300x",
            {"bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9, "tf32": 653.7, "fp32": 163.4},
            "AMD Instinct MI300X accelerator datasheet",
        ),
    )
}


def peak_flops_per_second(gpu: str, dtype: str) -> float:
    """Dense peak FLOP/s of a GPU (its name in any case: H100, h100) in a dtype."""
    known = gpu.lower()
    if known not in GPUS:
        raise LLMCalcError(f"--gpu {quote(gpu)}: unknown GPU; known: {', '.join(GPUS)}")
    gpu = known
    peaks = GPUS[gpu].peak_tflops
    if dtype not in peaks:
        raise LLMCalcError(
            f"--dtype {quote(dtype)}: no {gpu} peak for it; {gpu} has {', '.join(peaks)}"
        )
    return peaks[dtype] * 1e12


DEVICES = ("meta", "cpu", "cuda")  # where a model can be built


def free_bytes(device: str) -> int:
    """Memory free for new tensors on `device` now. On CPU, what this process may still use: the
    smallest of the RAM available, its cgroup's limit less its usage, and its address-space limit
    (ulimit -v) less its current size."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ResourceError("--device cuda: CUDA is not available on this machine")
        return torch.cuda.mem_get_info()[0]
    return min(free_cpu_bytes().values())


def free_in_words(device: str) -> tuple[int, str]:
    """(bytes free on `device`, which limit decides it: 'available RAM', 'cgroup limit',
    'address-space limit', or 'free on the GPU')."""
    if device == "cuda":
        return free_bytes(device), "free on the GPU"
    limits = free_cpu_bytes()
    tightest = min(limits, key=lambda name: limits[name])
    return limits[tightest], tightest


def free_cpu_bytes() -> dict[str, int]:
    """Each limit on this process's CPU memory that applies -> the bytes it leaves free."""
    limits = {"available RAM": _available_ram()}
    cgroup = _cgroup_free()
    if cgroup is not None:
        limits["cgroup limit"] = cgroup
    address_space = _address_space_free()
    if address_space is not None:
        limits["address-space limit"] = address_space
    return limits


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _available_ram() -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


_NO_LIMIT = 2**60  # cgroup v1 writes 'no limit' as 2**63 rounded down to a page


def _cgroup_free() -> int | None:
    """The tightest cgroup memory limit less usage, for this process's cgroup and its parents:
    v2 memory.max - memory.current, v1 memory.limit_in_bytes - memory.usage_in_bytes."""
    free = []
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2, unified
            root, limit_file, usage_file = "/sys/fs/cgroup", "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            root, limit_file, usage_file = (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        else:
            continue
        parts = [p for p in path.split("/") if p]
        # this cgroup and its parents; inside a container the root is the container's own
        for depth in range(len(parts), -1, -1):
            folder = "/".join([root, *parts[:depth]])
            limit, usage = _read(f"{folder}/{limit_file}"), _read(f"{folder}/{usage_file}")
            if limit and usage and limit.isdigit() and usage.isdigit() and int(limit) < _NO_LIMIT:
                free.append(max(0, int(limit) - int(usage)))
    return min(free) if free else None


def _address_space_free() -> int | None:
    """RLIMIT_AS (ulimit -v) less the process's current virtual size (VmSize)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmSize:"):
            return max(0, soft - int(line.split()[1]) * 1024)
    return soft
