"""The dtypes llmcalc builds weights in and stores KV caches in, their sizes in bytes, and the
torch dtype of each name (torch imported only when asked for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}  # the weight dtypes a model can be built in
KV_DTYPES = {**DTYPE_BYTES, "fp8": 1, "int8": 1}  # a cache may be quantised below the weights


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
