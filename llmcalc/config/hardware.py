"""The hardware: dense (no sparsity) peak tensor throughput per GPU and dtype, in TFLOP/s, from each
vendor's datasheet, and the memory a device has free now.

Peaks are what the silicon can do; sustained training reaches a fraction of them (MFU). These are
datasheet numbers, not measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llmcalc.errors import LLMCalcError, ResourceError


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
    if gpu not in GPUS:
        raise LLMCalcError(f"--gpu {gpu!r}: unknown GPU; known: {', '.join(GPUS)}")
    peaks = GPUS[gpu].peak_tflops
    if dtype not in peaks:
        raise LLMCalcError(f"--dtype {dtype!r}: no {gpu} peak for it; {gpu} has {', '.join(peaks)}")
    return peaks[dtype] * 1e12


DEVICES = ("meta", "cpu", "cuda")  # where a model can be built


def free_bytes(device: str) -> int:
    """Memory free for new tensors on `device` now."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ResourceError("--device cuda: CUDA is not available on this machine")
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
