"""Tensor parallelism (Megatron-LM's, Shoeybi et al. 2019) and sequence parallelism (Korthikanti
et al. 2022) on llmcalc's model with torch's own DTensor styles, as torchtitan's llama plan
writes them (torchtitan/models/llama3/infra/parallelize.py: apply_tp):

    tok_embeddings     RowwiseParallel: the vocabulary sharded; output Replicate (TP, an
                       all-reduce) or Shard(1) (SP, a reduce-scatter)
    pos_embeddings     (learned) replicated; with SP RowwiseParallel over positions, output
                       Shard(0): each rank adds its own positions
    attn_norm/mlp_norm SequenceParallel with SP (replicated weights, Shard(1) activations)
    attn, mlp          with SP PrepareModuleInput: Shard(1) -> Replicate (an all-gather)
    q/k/v, up/gate     ColwiseParallel (heads and d_ff sharded; local outputs)
    o_proj, down_proj  RowwiseParallel; output Replicate (all-reduce) or Shard(1) (SP)
    final_norm         SequenceParallel with SP
    lm_head            ColwiseParallel, output Shard(-1) kept a DTensor: the loss runs under
                       torch's loss_parallel (vocab-parallel cross-entropy), so no rank holds
                       the full logits. A tied head shares the embedding's Shard(0) weight.

Without SP the norms stay plain (replicated) tensors, which torch's fused optimizers will not
mix with DTensors in one call: give them their own parameter group (as _trace does).

Refused (LLMCalcError): what this plan does not shard correctly (fused qkv, latent attention,
MoE, parallel blocks, norms other than pre-norm, q/k norms, ALiBi, attention sinks, an
embedding norm) and degrees that do not divide the heads, KV heads or d_ff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)
from torch.testing._internal.distributed.fake_pg import FakeStore

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.train_step import make_optimizer
from llmcalc.model.transformer import build_model
from llmcalc.parallel.collectives import CollectiveRecorder
from llmcalc.parallel.data_plan import param_groups
from llmcalc.parallel.tensor import check_tensor_parallel
from llmcalc.parallel.tracker import local


def apply_tensor_parallel(
    model: torch.nn.Module, tp_mesh: DeviceMesh, sequence_parallel: bool
) -> None:
    """Shard llmcalc's Transformer in place over the 1-D `tp_mesh` (see the module docstring).
    Train it with `with loss_parallel(): model(tokens, targets).backward()`."""
    cfg = model.cfg
    check_tensor_parallel(cfg, tp_mesh.size())
    sp = sequence_parallel
    seq_shard, rep = Shard(1), Replicate()
    top = {
        "tok_embeddings": RowwiseParallel(
            input_layouts=rep, output_layouts=seq_shard if sp else rep
        ),
        "lm_head": ColwiseParallel(
            input_layouts=seq_shard if sp else rep,
            output_layouts=Shard(-1),
            use_local_output=False,
        ),
    }
    if sp and cfg.final_norm:
        top["final_norm"] = SequenceParallel()
    if sp and cfg.position == "learned":
        top["pos_embeddings"] = RowwiseParallel(input_layouts=rep, output_layouts=Shard(0))
    parallelize_module(model, tp_mesh, top)
    if cfg.tie_embeddings:  # both Shard(0) over the vocabulary: share one DTensor again
        model.lm_head.weight = model.tok_embeddings.weight
    for block in model.layers:
        plan = {
            "attn.q_proj": ColwiseParallel(),
            "attn.k_proj": ColwiseParallel(),
            "attn.v_proj": ColwiseParallel(),
            "attn.o_proj": RowwiseParallel(output_layouts=seq_shard if sp else rep),
            "mlp.up_proj": ColwiseParallel(),
            "mlp.down_proj": RowwiseParallel(output_layouts=seq_shard if sp else rep),
        }
        if cfg.is_glu:
            plan["mlp.gate_proj"] = ColwiseParallel()
        if sp:
            plan["attn_norm"] = SequenceParallel()
            plan["mlp_norm"] = SequenceParallel()
            plan["attn"] = PrepareModuleInput(
                input_layouts=(seq_shard, None, None), desired_input_layouts=(rep, None, None)
            )
            plan["mlp"] = PrepareModuleInput(
                input_layouts=(seq_shard,), desired_input_layouts=(rep,)
            )
        parallelize_module(block, tp_mesh, plan)


# --- the trace: one training step on the fake process group ------------------------------------


@dataclass
class TensorParallelTrace:
    """Rank 0's figures from one training step on fake tensors over a fake process group."""

    parameter_bytes: int  # local shards of every parameter (a tied one once)
    saved: int  # unique storages autograd saved but the weights (a DTensor: its local tensor's)
    last_layer_saved: int  # first saved inside the last block (its input included)
    gradient_bytes: int  # every gradient's local storage after backward
    collectives: list[tuple[str, str, int]] = field(default_factory=list)  # (phase, op, bytes)


def _calls(recorder: CollectiveRecorder) -> list[tuple[str, str, int]]:
    """(phase, collective, bytes) in parallel/tensor.py's names (all_reduce, ...)."""
    return [(r.phase, r.kind.replace("-", "_"), r.nbytes) for r in recorder.records]


def _storage(tensor: torch.Tensor) -> torch.UntypedStorage:
    return local(tensor).untyped_storage()


def trace_tensor_parallel(
    cfg: ModelConfig,
    tp: int,
    sequence_parallel: bool,
    batch: int,
    seq: int,
    dtype: torch.dtype = torch.float32,
    attention: str = "sdpa",
    checkpointing: str = "none",
) -> TensorParallelTrace:
    """One training step (forward with the loss under loss_parallel, backward, AdamW) of the
    TP-sharded model on a fake process group of `tp` ranks, on fake tensors (nothing allocated).
    Starts and destroys the process group (none may be running). With checkpointing "full"
    only the collectives mean what they say: torch.utils.checkpoint keeps a block's inputs
    through its own saved-tensor hooks, which this trace's hooks do not see."""
    check_tensor_parallel(cfg, tp, sequence_parallel, seq)
    dist.init_process_group("fake", rank=0, world_size=tp, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (tp,))
        with FakeTensorMode():
            model = build_model(cfg, "cpu", dtype, attention)
            apply_tensor_parallel(model, mesh, sequence_parallel)
            model.checkpointing = checkpointing == "full"
            return _trace(model, batch, seq)
    finally:
        dist.destroy_process_group()


def _trace(model: torch.nn.Module, batch: int, seq: int) -> TensorParallelTrace:
    cfg = model.cfg
    params = list(model.parameters())
    parameter_bytes = sum(_storage(p).nbytes() for p in params)
    saved: dict[int, int] = {}  # storage id -> nbytes
    keep: list[torch.UntypedStorage] = []  # ids stay unique while the storages live
    in_last: set[int] = set()
    block = {"current": None}
    last = model.layers[-1]

    weights = {id(_storage(p)) for p in params}  # a weight a matmul keeps is no activation

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = _storage(tensor)
        if id(storage) not in saved and id(storage) not in weights:
            saved[id(storage)] = storage.nbytes()
            keep.append(storage)
            if block["current"] is last:
                in_last.add(id(storage))
        return tensor

    last.register_forward_pre_hook(lambda module, args: block.update(current=module))
    last.register_forward_hook(lambda module, args, out: block.update(current=None))
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq))
    targets = tokens.roll(-1, dims=1)
    opt = make_optimizer(param_groups(params), "adamw")  # TP's plain norms in a group of their own
    recorder = CollectiveRecorder()
    recorder.phase = "forward"
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with recorder, loss_parallel():
        with hooks:
            loss = model(tokens, targets)
        recorder.phase = "backward"
        loss.backward()
        grads = {id(_storage(p.grad)): _storage(p.grad).nbytes() for p in params}
        recorder.phase = "optimizer"
        opt.step()
    last_layer = sum(saved[key] for key in in_last)
    return TensorParallelTrace(
        parameter_bytes, sum(saved.values()), last_layer, sum(grads.values()), _calls(recorder)
    )
