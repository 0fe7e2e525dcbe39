"""TEMPORARY stand-in for llmcalc.parallel.memory and llmcalc.parallel.comm (being written on main):
crude per-GPU closed forms with the agreed API, installed only when the real modules are missing.
DELETE once parallel/memory.py and parallel/comm.py land."""

import sys
import types
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RankMemory:
    peak: int
    categories: dict
    at: str


@dataclass(frozen=True)
class ParallelMemory:
    peak: int
    peak_rank: str
    ranks: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CommRow:
    collective: str
    cause: str
    group: str
    bytes: int
    count: int = 1


@dataclass(frozen=True)
class Communication:
    rows: list

    @property
    def total(self):
        return sum(row.bytes for row in self.rows)


def _params(cfg):
    d, f, L, V = cfg.d_model, cfg.d_ff, cfg.n_layers, cfg.vocab_size
    attn = 2 * d * d + 2 * d * cfg.n_kv_heads * (d // cfg.n_heads)
    mlp = 3 * d * f * max(1, cfg.n_experts)
    return L * (attn + mlp) + 2 * V * d


def parallel_memory(
    cfg,
    layout,
    batch,
    seq,
    precision="mixed",
    optimizer="adamw",
    checkpointing="none",
    attention="sdpa",
):
    params = _params(cfg) // (layout.tp * layout.pp)
    shard = layout.shard_group
    w, g, o = 2 * params, 2 * params, 12 * params
    if layout.zero >= 1:
        o //= shard
    if layout.zero >= 2:
        g //= shard
    if layout.zero >= 3:
        w //= shard
    tokens = seq // layout.cp * batch
    layers = -(-cfg.n_layers // layout.pp)
    per_layer = 34 * tokens * cfg.d_model // layout.tp
    if checkpointing == "full":
        acts = layers * 2 * tokens * cfg.d_model // layout.tp + per_layer
    else:
        acts = layers * per_layer
    acts *= min(layout.pp, layout.microbatches)
    logits = 4 * tokens * cfg.vocab_size // layout.tp
    cats = dict(weights=w, gradients=g, optimizer=o, activations=acts, logits=logits)
    rank = RankMemory(sum(cats.values()), cats, "backward")
    return ParallelMemory(rank.peak, "last stage", {"last stage": rank})


def communication(cfg, layout, batch, seq, precision="mixed", checkpointing="none"):
    rows = []
    m, tokens = layout.microbatches, seq // layout.cp * batch
    layers = -(-cfg.n_layers // layout.pp)
    if layout.tp > 1:
        per = 2 * tokens * cfg.d_model * 2 * (layout.tp - 1) // layout.tp
        rows.append(CommRow("all-reduce", "activations", "tp", 4 * layers * m * per))
    n = layout.shard_group
    if n > 1:
        grads = 2 * _params(cfg) // (layout.tp * layout.pp) * 2 * (n - 1) // n
        rows.append(CommRow("reduce-scatter", "gradients", "dp", grads))
        if layout.zero == 3:
            rows.append(CommRow("all-gather", "parameters", "dp", grads * m))
    if layout.pp > 1:
        rows.append(CommRow("send/recv", "activations", "pp", 4 * tokens * cfg.d_model * m))
    if layout.cp > 1:
        rows.append(CommRow("send/recv", "activations", "cp", 8 * tokens * cfg.d_model * m))
    return Communication(rows)


def install():
    try:
        import llmcalc.parallel.comm  # noqa: F401
        import llmcalc.parallel.memory  # noqa: F401
    except ImportError:
        for name, fn in (("memory", parallel_memory), ("comm", communication)):
            module = types.ModuleType(f"llmcalc.parallel.{name}")
            setattr(module, fn.__name__, fn)
            sys.modules[module.__name__] = module
