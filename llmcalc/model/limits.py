"""What a build can hold, checked before any module or tensor is made: the one place that says
whether torch can represent a model (or a step through it) at all.

Closed forms work with exact integers at any size a config states; a real nn.Module cannot:
  - a tensor holds at most 2**63 - 1 bytes (torch computes storage sizes in int64; past that it
    raises 'Storage size calculation overflowed', on meta and fake tensors too);
  - the module graph lives in host memory even on meta (the Python modules, parameters and their
    TensorImpls: 35-45 KiB per block measured, counted here as 64 KiB), so 10**9 layers cannot be
    built anywhere, and would take hours to try.
No torch here: the checks are arithmetic on the config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from llmcalc.config.hardware import free_bytes
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import ResourceError, RunFailed
from llmcalc.units import format_bytes

TENSOR_BYTES_LIMIT = 2**63  # exclusive: int64 storage sizes
BLOCK_HOST_BYTES = 64 * 2**10  # host memory of one block of the module graph (upper estimate)
MODEL_HOST_BYTES = 2**20  # the rest of the graph: embeddings, head, containers
# Building a block on meta takes about 1.7 ms here (20,000 layers: 34 s), so past a few thousand
# layers a build would run for minutes; published dense models stop near 160.
MAX_BUILT_LAYERS = 4096
CLOSED_FORMS = "the closed forms have no such limit: memory, compare, sweep, flops --no-count"


def weight_tensors(cfg: ModelConfig) -> dict[str, tuple[str, int]]:
    """The largest weight tensors: name -> (its shape in words, elements)."""
    d = cfg.d_model
    tensors = {
        "the token embedding": ("vocab_size × d_model", cfg.vocab_size * d),
        "the query projection": ("d_model × n_heads·head_dim", d * cfg.q_dim),
        "the key projection": ("d_model × n_kv_heads·head_dim", d * cfg.kv_dim),
        "the MLP": ("d_model × d_ff", d * cfg.d_ff),
    }
    if cfg.position == "learned":
        rows = cfg.max_seq_len + cfg.position_offset
        shape = "(max_seq_len + position_offset) × d_model" if cfg.position_offset else None
        tensors["the position table"] = (shape or "max_seq_len × d_model", rows * d)
    return tensors


def step_tensors(
    cfg: ModelConfig, batch: int, seq: int, attention: str = "sdpa"
) -> dict[str, tuple[str, int, int]]:
    """The largest tensors of a training step or a prefill at (batch, seq): name -> (shape in
    words, elements, bytes per element: fp32 for activations, int64 for token ids, one byte for
    a boolean mask). Attention scores count as B·h·T·T in either implementation: SDPA on meta and
    fake tensors runs its math path, which makes them too."""
    n = batch * seq
    tensors = {
        "the token ids": ("batch × seq", n, 8),
        "the hidden states": ("batch × seq × d_model", n * cfg.d_model, 4),
        "the queries": ("batch × seq × n_heads·head_dim", n * cfg.q_dim, 4),
        "the MLP activations": ("batch × seq × d_ff", n * cfg.d_ff, 4),
        "the logits": ("batch × seq × vocab_size", n * cfg.vocab_size, 4),
        "the attention scores": ("batch × n_heads × seq × seq", n * cfg.n_heads * seq, 4),
        "the causal mask": ("seq × seq", seq * seq, 4 if cfg.position == "alibi" else 1),
        "the KV cache of a layer": ("batch × seq × n_kv_heads·head_dim", n * cfg.kv_dim, 4),
    }
    if attention in ("eager", "math") or cfg.position == "alibi":
        tensors["the causal mask"] = ("n_heads × seq × seq", cfg.n_heads * seq * seq, 4)
    if cfg.position == "sinusoidal":
        tensors["the position table"] = ("seq × d_model", seq * cfg.d_model, 4)
    return tensors


def _refuse_past_int64(
    where: str, tensors: dict, default_bytes: int, consequence: str, hint: str
) -> None:
    for name, (shape, elements, *width) in tensors.items():
        element_bytes = width[0] if width else default_bytes
        if elements * element_bytes >= TENSOR_BYTES_LIMIT:
            raise ResourceError(
                f"{where}: {name} would have {shape} = {elements:,} elements, "
                f"{elements * element_bytes:.3e} bytes; a torch tensor holds less than 2**63 "
                f"bytes, so {consequence}; {hint}"
            )


def check_buildable(cfg: ModelConfig, element_bytes: int = 4) -> None:
    """Refuse a model whose weights torch cannot represent or whose module graph this machine
    cannot hold, before building anything (build_model calls this)."""
    _refuse_past_int64(
        cfg.origin, weight_tensors(cfg), element_bytes, "this model cannot be built", CLOSED_FORMS
    )
    if cfg.n_layers > MAX_BUILT_LAYERS:
        raise ResourceError(
            f"{cfg.origin}: n_layers = {cfg.n_layers:,}: llmcalc builds at most "
            f"{MAX_BUILT_LAYERS:,} layers (each takes about 1.7 ms on meta, so this build would "
            f"run for about {cfg.n_layers * 17 // 10_000:,} s); {CLOSED_FORMS}"
        )
    needed = MODEL_HOST_BYTES + cfg.n_layers * BLOCK_HOST_BYTES
    if needed > 2**30:  # below 1 GiB: not worth reading /proc
        free = free_bytes("cpu")
        if needed > free:
            raise ResourceError(
                f"{cfg.origin}: n_layers = {cfg.n_layers:,}: the model's module graph needs about "
                f"{format_bytes(needed)} of host memory ({format_bytes(BLOCK_HOST_BYTES)} a "
                f"block, on meta too) but {format_bytes(free)} is free; {CLOSED_FORMS}"
            )


def check_step(cfg: ModelConfig, batch: int, seq: int, attention: str = "sdpa") -> None:
    """Refuse a step at (batch, seq) with a tensor torch cannot represent, before tracing it."""
    where = f"{cfg.origin} at batch {batch:,} × seq {seq:,}"
    hint = "a smaller --batch or --seq; the closed forms (flops --no-count, memory) have no limit"
    tensors = step_tensors(cfg, batch, seq, attention)
    _refuse_past_int64(where, tensors, 4, "this step cannot be run or traced", hint)


@contextlib.contextmanager
def real_allocation(what: str) -> Iterator[None]:
    """Around a build or a step on a real device: the allocator failing (MemoryError, torch's
    'can't allocate memory' or 'out of memory') is a run that failed, one line and exit code 1."""
    try:
        yield
    except MemoryError:
        raise RunFailed(f"{what}: out of memory (MemoryError)") from None
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        text = str(exc)
        if "can't allocate memory" not in text and "out of memory" not in text.lower():
            raise
        start = text.find("DefaultCPUAllocator")
        reason = (text[start:] if start >= 0 else text).split(". Error code")[0].splitlines()[0]
        raise RunFailed(f"{what}: out of memory ({reason[:200]})") from None
