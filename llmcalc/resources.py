"""How much memory a device has free, and the refusal to build weights that would not fit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmcalc.config import ModelConfig
from llmcalc.errors import ResourceError
from llmcalc.formulas import weight_bytes

if TYPE_CHECKING:
    import torch

DEVICES = ("meta", "cpu", "cuda")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}  # the weight dtypes a model can be built in


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def format_bytes(n: int) -> str:
    """Binary units (DESIGN.md): 1 KiB = 1024 bytes."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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


def check_weights_fit(cfg: ModelConfig, device: str, dtype: str) -> None:
    """Refuse, before allocating anything, to build weights that do not fit on the device."""
    if device == "meta":
        return
    needed = weight_bytes(cfg, DTYPE_BYTES[dtype])
    free = free_bytes(device)
    if needed > free:
        raise ResourceError(
            f"--device {device}: the {dtype} weights of {cfg.name} need {format_bytes(needed)} "
            f"({needed:,} bytes) but {format_bytes(free)} is free; use --device meta (the default)"
        )
