"""Communication per training step per GPU, in exact bytes, by collective, cause and the mesh
dimension it runs over. No torch.

Byte convention (parallel/collectives.py records the same): an all-gather counts its gathered
output, a reduce-scatter its unreduced input, an all-reduce its tensor, an all-to-all its input,
a point-to-point transfer the tensor sent or received. These are the sizes torch's collectives
take; the bytes a ring algorithm puts on the wire are (n − 1)/n of them (2(n − 1)/n for an
all-reduce), which the planner applies (parallel/plan.py).

Data parallelism, per micro-batch (PyTorch FSDP2; Zhao et al. 2023, 'PyTorch FSDP', section 3):
    ZeRO-3  all-gather every unit's weights (each block, and the root: embeddings, final norm,
            LM head) for its forward and again for its backward; reduce-scatter every unit's
            gradients (in the reduce dtype: fp32 under mixed precision)
    ZeRO-2  the same, but each block is gathered once (kept from forward to backward)
    ZeRO-1  all-reduce every unit's gradients (replicate_with_fsdp), then all-gather each updated
            weight once per step (parallel/data_plan.py's ShardedOptimizer)
    ZeRO-0  all-reduce every unit's gradients
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import PRECISION
from llmcalc.memory.parameters import parameter_groups
from llmcalc.parallel.buffers import fsdp_units, local_experts
from llmcalc.parallel.context import context_comm
from llmcalc.parallel.expert import all_to_alls
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.memory import rank_config, tensor_share
from llmcalc.parallel.pipeline import chunk, chunk_parameters, p2p_bytes, rank_chunks
from llmcalc.parallel.tensor import tp_communication

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "point-to-point")
CAUSES = ("parameters", "gradients", "activations", "experts")


@dataclass(frozen=True)
class CommRow:
    collective: str
    cause: str
    group: str  # the mesh dimension: dp, tp, pp, cp, ep
    bytes: int  # per GPU per step
    count: int  # collectives issued


@dataclass(frozen=True)
class Communication:
    rows: list[CommRow]

    @property
    def total(self) -> int:
        return sum(row.bytes for row in self.rows)

    def by_collective(self) -> dict[str, int]:
        out = dict.fromkeys(COLLECTIVES, 0)
        for row in self.rows:
            out[row.collective] += row.bytes
        return out


def reduce_bytes(precision: str) -> int:
    """Bytes per gradient element as reduced: fp32 under mixed precision (FSDP2's
    MixedPrecisionPolicy(reduce_dtype=float32)), else the gradient's own dtype."""
    return PRECISION[precision].step_grad


def data_parallel_rows(cfg: ModelConfig, layout: Layout, precision: str = "fp32") -> list[CommRow]:
    """Gradient and weight collectives of data parallelism over the dp · cp shard group."""
    if layout.shard_group == 1:
        return []
    p = PRECISION[precision]
    m, layers = layout.microbatches, cfg.n_layers
    units = fsdp_units(cfg, pad=layout.shard_group)  # what FSDP2's collectives move, padded
    n_padded = units.root + units.blocks
    if layout.ep > 1:  # the experts are left out of data parallelism (each rank's are its own)
        n_padded -= local_experts(cfg, pad=layout.shard_group)
    if layout.zero >= 2:
        times = 2 if layout.zero == 3 else 1  # ZeRO-3 gathers again for the backward
        gathers, gathered = times * (layers + 1), times * n_padded
        g = reduce_bytes(precision)
        return [
            CommRow("all-gather", "parameters", "dp", m * gathered * p.weight, m * gathers),
            CommRow("reduce-scatter", "gradients", "dp", m * n_padded * g, m * (layers + 1)),
        ]
    # replicate_with_fsdp all-reduces the gradients as the backward makes them (bf16 under
    # mixed precision: MasterWeights converts them to fp32 only for the step), unpadded
    whole = fsdp_units(cfg)
    n_params = whole.root + whole.blocks - (local_experts(cfg) if layout.ep > 1 else 0)
    rows = [CommRow("all-reduce", "gradients", "dp", m * n_params * p.grad, m * (layers + 1))]
    if layout.zero == 1:
        tensors = sum(len(sizes) * times for sizes, times in parameter_groups(cfg))
        rows.append(CommRow("all-gather", "parameters", "dp", n_padded * p.weight, tensors))
    return rows


def communication(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    precision: str = "fp32",
    checkpointing: str = "none",
) -> Communication:
    """Every collective one GPU takes part in during one training step under `layout`: the
    data-parallel ones over the dp · cp shard group (on the rank's tensor-parallel share of the
    model), the tensor-parallel ones (parallel/tensor.py) and the context-parallel ones
    (parallel/context.py), each per micro-batch, times the micro-batches."""
    a = PRECISION[precision].activation
    m, tokens = layout.microbatches, seq // layout.cp
    if layout.pp > 1:
        return Communication(_merged(pipeline_rows(cfg, layout, batch, seq, precision)))
    rows = data_parallel_rows(tensor_share(cfg, layout.tp), layout, precision)
    if layout.ep > 1:
        for move in all_to_alls(cfg, batch, tokens, layout.ep, 0, precision, checkpointing):
            rows.append(CommRow("all-to-all", "experts", "ep", m * move.total_sent, m * move.times))
    if layout.tp > 1:
        grad_bytes = PRECISION[precision].grad
        transfers = tp_communication(
            cfg, batch, tokens, a, layout.tp, layout.sp, grad_bytes, checkpointing
        )
        for t in transfers:
            collective = t.collective.replace("_", "-")
            rows.append(CommRow(collective, t.cause, "tp", m * t.total, m * t.count))
    if layout.cp > 1:
        cp = context_comm(rank_config(cfg, layout), batch, seq, layout.cp, a, checkpointing)
        layers = cfg.n_layers
        gathers = layers * (2 if checkpointing == "full" else 1)
        rows.append(CommRow("all-gather", "activations", "cp", m * cp.all_gather, m * 2 * gathers))
        rows.append(
            CommRow("reduce-scatter", "activations", "cp", m * cp.reduce_scatter, m * 2 * layers)
        )
    return Communication(_merged(rows))


def pipeline_rows(
    cfg: ModelConfig, layout: Layout, batch: int, seq: int, precision: str
) -> list[CommRow]:
    """A pipeline rank's point-to-point traffic (parallel/pipeline.py; a middle stage sends and
    receives both ways: the busiest) and, beside it, its stage's tensor-parallel collectives and
    the data-parallel collectives of its parameters as one unit per chunk (an estimate: not
    traced)."""
    local = rank_config(cfg, layout)
    a = PRECISION[precision].activation
    rank = min(1, layout.pp - 1)
    p2p = p2p_bytes(
        local, layout.pp, rank, layout.microbatches, batch, seq, a, layout.virtual_stages
    )
    sends = layout.microbatches * len(rank_chunks(layout.pp, rank, layout.virtual_stages))
    rows = []
    if layout.tp > 1:  # the stage's layers' tensor-parallel collectives (embedding and head's too)
        layers = sum(
            chunk(cfg, layout.pp, c, layout.virtual_stages).layers
            for c in rank_chunks(layout.pp, rank, layout.virtual_stages)
        )
        transfers = tp_communication(
            cfg.replace(n_layers=layers),
            batch,
            seq,
            a,
            layout.tp,
            layout.sp,
            PRECISION[precision].grad,
        )
        m = layout.microbatches
        rows += [
            CommRow(t.collective.replace("_", "-"), t.cause, "tp", m * t.total, m * t.count)
            for t in transfers
        ]
    rows += [
        CommRow("point-to-point", "activations", "pp", p2p.activations_sent, sends),
        CommRow("point-to-point", "activations", "pp", p2p.activations_received, sends),
        CommRow("point-to-point", "gradients", "pp", p2p.gradients_sent, sends),
        CommRow("point-to-point", "gradients", "pp", p2p.gradients_received, sends),
    ]
    if layout.shard_group > 1:
        chunks = rank_chunks(layout.pp, 0, layout.virtual_stages)
        groups = [
            group
            for c in chunks
            for group in chunk_parameters(local, chunk(local, layout.pp, c, layout.virtual_stages))
        ]
        n_params = sum(sum(sizes) * times for sizes, times in groups)
        p, units, m = PRECISION[precision], len(chunks), layout.microbatches
        if layout.zero >= 2:
            times = 2 if layout.zero == 3 else 1
            gathered = m * times * n_params * p.weight
            reduced = m * n_params * reduce_bytes(precision)
            rows.append(CommRow("all-gather", "parameters", "dp", gathered, m * times * units))
            rows.append(CommRow("reduce-scatter", "gradients", "dp", reduced, m * units))
        else:  # gradients reduced once per step, after the last micro-batch (as pipelines do)
            rows.append(CommRow("all-reduce", "gradients", "dp", n_params * p.grad, units))
            if layout.zero == 1:
                rows.append(CommRow("all-gather", "parameters", "dp", n_params * p.weight, units))
    return [row for row in rows if row.bytes]


def _merged(rows: list[CommRow]) -> list[CommRow]:
    """One row per (collective, cause, group), in first-seen order."""
    merged: dict[tuple[str, str, str], CommRow] = {}
    for row in rows:
        key = (row.collective, row.cause, row.group)
        if key in merged:
            old = merged[key]
            row = CommRow(*key, old.bytes + row.bytes, old.count + row.count)
        merged[key] = row
    return list(merged.values())
