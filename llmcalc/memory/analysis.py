"""The data behind `llmcalc memory`: KV cache for MHA/GQA/MQA, predicted training and inference
memory, the largest batch and longest sequence that fit, and optionally the traced and the
measured step beside the prediction. Formula-only work imports no torch.

Python API: `analyze_memory(load_config("llama-2-70b"), batch=1, seq=4096, kv_heads=8)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmcalc.config.dtypes import KV_DTYPES
from llmcalc.config.experts import is_latent
from llmcalc.config.hardware import free_in_words
from llmcalc.config.schema import ModelConfig
from llmcalc.config.sizes import MAX_SIZE
from llmcalc.errors import LLMCalcError, ResourceError, quote
from llmcalc.memory.experts import buffer_bytes
from llmcalc.memory.formula import (
    InferenceMemory,
    TrainingMemory,
    default_gqa_groups,
    inference_memory,
    kv_cache_bytes,
    training_memory,
    with_kv_heads,
)
from llmcalc.memory.latent import KV_FORMS, kv_sizes, latent_refusal, unmodelled
from llmcalc.memory.parameters import parameter_groups
from llmcalc.params.formula import param_formula
from llmcalc.units import format_bytes

if TYPE_CHECKING:
    from llmcalc.memory.measure import Measured
    from llmcalc.memory.trace import TracedMemory


@dataclass(frozen=True)
class KVVariant:
    kind: str  # 'mha' | 'gqa' | 'mqa', or with latent attention 'latent' | 'decompressed'
    n_kv_heads: int  # heads cached: the latent is one
    kv_params: int  # k and v projection parameters, all layers
    bytes_per_token: int
    bytes_per_sequence: int  # at seq
    total: int  # at batch x seq


@dataclass(frozen=True)
class Fit:
    memory: int
    max_batch_inference: int  # at this seq; 0 when even batch 1 does not fit
    max_seq_inference: int  # at this batch, at most max_seq_len; 0 when even seq 1 does not fit
    max_seq_inference_memory: int  # what the memory alone allows, max_seq_len aside
    seq_limit: str  # what bounds max_seq_inference: 'max_seq_len' or 'memory'
    max_batch_training: int  # at this seq; 0 when even batch 1 does not fit
    # peaks at the smallest size, the bytes needed when a maximum above is 0
    inference_peak_batch_1: int  # batch 1 × seq
    inference_peak_seq_1: int  # batch × seq 1
    training_peak_batch_1: int  # batch 1 × seq


@dataclass(frozen=True)
class MemoryAnalysis:
    config: ModelConfig  # the analysed model (with the chosen KV heads)
    batch: int
    seq: int
    precision: str
    optimizer: str
    checkpointing: str
    attention: str
    dtype: str
    kv_dtype: str
    kv_variants: dict[str, KVVariant | None]
    training: TrainingMemory
    inference: InferenceMemory
    fit: Fit | None = None
    traced: TracedMemory | None = None  # the training step
    traced_inference: TracedMemory | None = None  # the prefill
    measured: Measured | None = None
    dtype_source: str = "--dtype"  # where `dtype` came from: '--dtype', 'config' or 'default'

    @property
    def kv_cache_bytes(self) -> int:
        return self.inference.kv_cache


def resolve_kv_heads(cfg: ModelConfig, mha: bool, gqa: int | None, mqa: bool) -> int:
    """The KV heads chosen by --mha, --gqa N or --mqa (the preset's own by default)."""
    if sum((mha, gqa is not None, mqa)) > 1:
        raise LLMCalcError("--mha, --gqa and --mqa: give at most one")
    if is_latent(cfg) and (mha or mqa or gqa is not None):
        option = "--mha" if mha else "--mqa" if mqa else f"--gqa {gqa}"
        raise LLMCalcError(latent_refusal(cfg, option))
    if mha:
        return cfg.n_heads
    if mqa:
        return 1
    if gqa is None:
        return cfg.n_kv_heads
    if gqa <= 0 or cfg.n_heads % gqa:
        heads = cfg.n_heads
        listed = (  # a few thousand heads at most are worth listing (and quick to)
            f" (divisors: {', '.join(str(g) for g in range(1, heads + 1) if heads % g == 0)})"
            if heads <= 4096
            else ""
        )
        raise LLMCalcError(
            f"--gqa {quote(gqa)}: the number of KV heads must divide n_heads = {heads}{listed}"
        )
    return gqa


def kv_variants(
    cfg: ModelConfig, batch: int, seq: int, kv_bytes: int
) -> dict[str, KVVariant | None]:
    if is_latent(cfg):
        return latent_variants(cfg, batch, seq, kv_bytes)
    groups = default_gqa_groups(cfg)
    heads = {"mha": cfg.n_heads, "gqa": groups, "mqa": 1}
    variants: dict[str, KVVariant | None] = {}
    for kind, n_kv in heads.items():
        if n_kv is None:
            variants[kind] = None
            continue
        variant = with_kv_heads(cfg, n_kv)
        # a fused qkv matrix's k and v rows count as the separate k and v projections do
        components = param_formula(variant.replace(fused_qkv=False)).components
        variants[kind] = KVVariant(
            kind=kind,
            n_kv_heads=n_kv,
            kv_params=components["attn_k"] + components["attn_v"],
            bytes_per_token=kv_cache_bytes(variant, 1, 1, kv_bytes),
            bytes_per_sequence=kv_cache_bytes(variant, 1, seq, kv_bytes),
            total=kv_cache_bytes(variant, batch, seq, kv_bytes),
        )
    return variants


def latent_variants(cfg: ModelConfig, batch: int, seq: int, kv_bytes: int) -> dict[str, KVVariant]:
    """Latent attention's cache as it is held (the latent) and as transformers 4 holds it (the
    decompressed keys and values): the same kv_a and kv_b parameters make both."""
    components = param_formula(cfg).components
    return {
        form: KVVariant(
            kind=form,
            n_kv_heads=kv_sizes(cfg, form)[0],
            kv_params=components["attn_kv_a"] + components["attn_kv_b"],
            bytes_per_token=kv_cache_bytes(cfg, 1, 1, kv_bytes, form),
            bytes_per_sequence=kv_cache_bytes(cfg, 1, seq, kv_bytes, form),
            total=kv_cache_bytes(cfg, batch, seq, kv_bytes, form),
        )
        for form in KV_FORMS
    }


def _largest(fits: Callable[[int], bool], limit: int) -> int:
    """Largest x in [1, limit] with fits(x) (fits is monotone), 0 if none."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def find_fit(
    cfg: ModelConfig, batch: int, seq: int, memory: int, setup: dict, dtype_bytes: int, kv: int
) -> Fit:
    """The largest batch (at seq) and the longest sequence (at batch, and no longer than
    max_seq_len, the model's context) that fit in `memory`, for inference and training."""

    def infer(b: int, t: int) -> int:
        return inference_memory(cfg, b, t, dtype_bytes, kv).peak

    def train(b: int) -> int:
        return training_memory(cfg, b, seq, **setup).peak

    limit = MAX_SIZE  # the search doubles then bisects: about 200 closed forms at most
    by_memory = _largest(lambda t: infer(batch, t) <= memory, limit)
    return Fit(
        memory=memory,
        max_batch_inference=_largest(lambda b: infer(b, seq) <= memory, limit),
        max_seq_inference=min(by_memory, cfg.max_seq_len),
        max_seq_inference_memory=by_memory,
        seq_limit="max_seq_len" if by_memory >= cfg.max_seq_len else "memory",
        max_batch_training=_largest(lambda b: train(b) <= memory, limit),
        inference_peak_batch_1=infer(1, seq),
        inference_peak_seq_1=infer(batch, 1),
        training_peak_batch_1=train(1),
    )


def analyze_memory(
    cfg: ModelConfig,
    batch: int = 1,
    seq: int | None = None,
    kv_heads: int | None = None,
    precision: str = "mixed",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
    dtype: str | None = None,
    kv_dtype: str | None = None,
    gpu_memory: int | None = None,
) -> MemoryAnalysis:
    """Formula-only memory analysis (no torch). Add traced/measured with dataclasses.replace.
    dtype None: the config's dtype (config.json torch_dtype) if it has one, else bf16."""
    seq = cfg.max_seq_len if seq is None else seq
    if dtype is not None:
        source = "--dtype"
    elif cfg.dtype is not None:
        dtype, source = cfg.dtype, "config"
    else:
        dtype, source = "bf16", "default"
    kv_dtype = dtype if kv_dtype is None else kv_dtype
    if kv_heads is not None and kv_heads != cfg.n_kv_heads:
        cfg = with_kv_heads(cfg, kv_heads)
    setup = dict(
        precision=precision, optimizer=optimizer, checkpointing=checkpointing, attention=attention
    )
    dtype_bytes, kv_bytes = KV_DTYPES[dtype], KV_DTYPES[kv_dtype]
    refuse_unmodelled(cfg, dtype, kv_dtype, seq, checkpointing, attention)
    fit = None
    if gpu_memory is not None:
        fit = find_fit(cfg, batch, seq, gpu_memory, setup, dtype_bytes, kv_bytes)
    return MemoryAnalysis(
        config=cfg,
        batch=batch,
        seq=seq,
        dtype=dtype,
        dtype_source=source,
        kv_dtype=kv_dtype,
        kv_variants=kv_variants(cfg, batch, seq, kv_bytes),
        training=training_memory(cfg, batch, seq, **setup),
        inference=inference_memory(cfg, batch, seq, dtype_bytes, kv_bytes),
        fit=fit,
        **setup,
    )


def refuse_unmodelled(
    cfg: ModelConfig, dtype: str, kv_dtype: str, seq: int, checkpointing: str, attention: str
) -> None:
    """No silently wrong figure: where a closed form does not model this config yet, refuse,
    saying what is not modelled and giving what is exact (the weights, the KV cache)."""
    missing = unmodelled(cfg, checkpointing, attention)
    if missing is None:
        return
    weights = sum(sum(sizes) * times for sizes, times in parameter_groups(cfg))
    weights = weights * KV_DTYPES[dtype] + buffer_bytes(cfg, KV_DTYPES[dtype])
    per_token = kv_cache_bytes(cfg, 1, 1, KV_DTYPES[kv_dtype])
    kv = f"KV cache {format_bytes(per_token)} per token ({per_token:,} bytes, {kv_dtype}"
    if is_latent(cfg):
        decompressed = kv_cache_bytes(cfg, 1, 1, KV_DTYPES[kv_dtype], "decompressed")
        kv += f", the latent; decompressed {format_bytes(decompressed)}"
    raise LLMCalcError(
        f"memory: {cfg.name}: {missing} is not modelled yet, so no training or inference peak "
        f"is given; exact: weights {format_bytes(weights)} ({weights:,} bytes, {dtype}), {kv}), "
        f"{format_bytes(kv_cache_bytes(cfg, 1, seq, KV_DTYPES[kv_dtype]))} at seq {seq:,}"
    )


def refuse_if_too_big(device: str, predicted: int, force: bool) -> None:
    """Before any trace or build: the predicted peak against what this process may use."""
    free, limit = free_in_words(device)
    if predicted <= free or (force and device == "cuda"):
        return
    hint = "pass --force to try anyway" if device == "cuda" else "use --trace: it needs no memory"
    raise ResourceError(
        f"--measure on {device}: the predicted peak is {format_bytes(predicted)} "
        f"({predicted:,} bytes) but {format_bytes(free)} ({free:,} bytes) is free ({limit}); "
        f"{hint}"
    )
