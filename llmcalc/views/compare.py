"""`llmcalc compare`: models side by side, from the closed forms only (no torch, instant).
Each figure is the one the single-model command reports, at the same batch, seq and precision."""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.dtypes import KV_DTYPES
from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.flops.formula import decode_flops, forward_flops, step_flops
from llmcalc.memory.formula import TrainingMemory, inference_memory, kv_cache_bytes, training_memory
from llmcalc.params.formula import param_formula


@dataclass(frozen=True)
class Row:
    label: str
    key: str  # its name in --json
    unit: str  # 'count' | 'flops' | 'bytes' | 'text'


ROWS = (
    Row("parameters", "params", "count"),
    Row("non-embedding parameters", "non_embedding_params", "count"),
    Row("attention", "attention", "text"),
    Row("forward FLOPs per token (matmul, full T×T)", "forward_flops_per_token", "flops"),
    Row("training FLOPs per token (fwd + bwd)", "train_flops_per_token", "flops"),
    Row("decode FLOPs per token over T keys", "decode_flops_per_token", "flops"),
    Row("KV cache per token", "kv_bytes_per_token", "bytes"),
    Row("KV cache at batch × seq", "kv_cache_bytes", "bytes"),
    Row("training peak", "training_peak", "bytes"),
    Row("training peak phase", "training_peak_phase", "text"),
    Row("inference dtype (weights and KV)", "inference_dtype", "text"),
    Row("inference peak (weights + KV + prefill)", "inference_peak", "bytes"),
)


def inference_dtype(cfg: ModelConfig, dtype: str | None) -> str:
    """--dtype when given, else the config's own (config.json's torch_dtype), else bf16: the
    rule of `llmcalc memory`."""
    return dtype or cfg.dtype or "bf16"


def model_metrics(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    precision: str,
    dtype: str | None,
    training: TrainingMemory | None = None,
) -> dict[str, int | str]:
    """Row key -> value for one model at one (batch, seq); `training` is its training memory at
    that precision when the caller has it already; `dtype`: the inference dtype, None for the
    model's own (inference_dtype)."""
    params = param_formula(cfg)
    forward = forward_flops(cfg, batch, seq)
    tokens = batch * seq
    if training is None:
        training = training_memory(cfg, batch, seq, precision=precision)
    dtype = inference_dtype(cfg, dtype)
    width = KV_DTYPES[dtype]
    return {
        "params": params.total.value,
        "non_embedding_params": params.non_embedding,
        "attention": (
            f"MLA {cfg.n_heads}, latent {cfg.kv_lora_rank}+{cfg.qk_rope_head_dim}"
            if is_latent(cfg)
            else f"{cfg.attention_kind} {cfg.n_heads}/{cfg.n_kv_heads}"
        ),
        "forward_flops_per_token": forward.matmul_total // tokens,
        "train_flops_per_token": step_flops(cfg, forward, "none").model // tokens,
        "decode_flops_per_token": decode_flops(cfg, seq - 1),  # the last of T tokens
        "kv_bytes_per_token": kv_cache_bytes(cfg, 1, 1, width),
        "kv_cache_bytes": kv_cache_bytes(cfg, batch, seq, width),
        "training_peak": training.peak,
        "training_peak_phase": training.peak_phase,
        "inference_dtype": dtype,
        "inference_peak": inference_memory(cfg, batch, seq, width, width).peak,
    }


def compare_models(
    configs: list[ModelConfig], batch: int, seq: int, precision: str, dtype: str | None = None
) -> dict[str, dict[str, int | str]]:
    """Model name -> row key -> value."""
    table: dict[str, dict[str, int | str]] = {}
    for cfg in configs:
        table[_unique(cfg.name, table)] = model_metrics(cfg, batch, seq, precision, dtype)
    return table


def _unique(name: str, taken: dict) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate
