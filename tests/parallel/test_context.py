"""Context parallelism: the closed form (parallel/context.py) equals a rank's traced step on
torch's fake process group, byte for byte; the model split over real gloo processes computes
what one process computes."""

import os
import socket
import tempfile
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.model.transformer import build_model
from llmcalc.parallel.context import (
    context_comm,
    context_layer_activations,
    context_saved_activations,
)
from llmcalc.parallel.context_plan import apply_context_parallel, split_sequence, trace_context
from tests.conftest import tiny

BATCH, SEQ = 2, 16


def llama(n_kv_heads: int) -> ModelConfig:
    """llama-3-8b's layout (RMSNorm, RoPE, SwiGLU), two small layers."""
    return load_config("llama-3-8b").replace(
        n_layers=2, d_model=64, n_heads=4, n_kv_heads=n_kv_heads, head_dim=16, d_ff=128,
        ffn_multiplier=None, multiple_of=None, vocab_size=64,
    )  # fmt: skip


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("precision,a", [("fp32", 4), ("bf16", 2)])
@pytest.mark.parametrize("cp,rank", [(2, 0), (2, 1), (4, 0), (4, 2), (4, 3)])
def test_saved_activations_and_collectives_match_the_trace(cp, rank, precision, a, n_kv_heads):
    cfg = llama(n_kv_heads)
    traced = trace_context(cfg, BATCH, SEQ, cp, rank, precision)
    assert traced.saved == context_saved_activations(cfg, BATCH, SEQ, cp, rank, a)
    comm = context_comm(cfg, BATCH, SEQ, cp, a)
    assert (traced.all_gather, traced.reduce_scatter) == (comm.all_gather, comm.reduce_scatter)
    # per layer and step: K and V gathered, 2·B·T·kv·a, and as much reduce-scattered
    assert comm.all_gather == comm.reduce_scatter == 2 * 2 * BATCH * SEQ * cfg.kv_dim * a


@pytest.mark.parametrize("cp,rank,precision,a", [(2, 1, "fp32", 4), (4, 3, "bf16", 2)])
def test_full_checkpointing_gathers_twice_and_keeps_the_block_inputs(cp, rank, precision, a):
    cfg = llama(2)
    traced = trace_context(cfg, BATCH, SEQ, cp, rank, precision, checkpointing="full")
    expected = context_saved_activations(cfg, BATCH, SEQ, cp, rank, a, checkpointing="full")
    assert traced.saved == expected
    comm = context_comm(cfg, BATCH, SEQ, cp, a, checkpointing="full")
    assert (traced.all_gather, traced.reduce_scatter) == (comm.all_gather, comm.reduce_scatter)
    assert comm.all_gather == 2 * comm.reduce_scatter


def test_a_layer_keeps_its_chunk_and_the_gathered_keys():
    """llama-3-8b at T = 8192 over cp = 8, bf16: rank 0 keeps the gathered K and V (2·B·T·kv·a),
    the last rank K and V repeated for its 32 query heads over all 8192 keys and the mask."""
    cfg = load_config("llama-3-8b")
    first = context_layer_activations(cfg, 1, 8192, 8, 0, 2)
    last = context_layer_activations(cfg, 1, 8192, 8, 7, 2)
    assert first["attn.k_gathered"] == first["attn.v_gathered"] == 8192 * 1024 * 2
    assert last["attn.k_repeated"] == last["attn.v_repeated"] == 8192 * 4096 * 2
    assert last["attn.causal_mask"] == 1024 * 8192 * 2
    assert first["attn.q_rope"] == 1024 * 4096 * 2  # queries: this rank's 1024 tokens only
    comm = context_comm(cfg, 1, 8192, 8, 2)
    assert comm.all_gather == comm.reduce_scatter == 32 * 2 * 8192 * 1024 * 2  # 1 GiB each
    assert comm.sent == comm.total * 7 // 8


@pytest.mark.parametrize("cp", [3, 0, 32])
def test_a_cp_that_does_not_divide_the_sequence_is_refused(cp):
    with pytest.raises(LLMCalcError, match=rf"--cp {cp} .*seq {SEQ}"):
        context_comm(llama(2), BATCH, SEQ, cp, 2)
    with pytest.raises(LLMCalcError, match="--cp"):
        split_sequence(torch.zeros(1, SEQ, dtype=torch.long), 3, 0)


def test_what_is_not_modelled_is_refused():
    with pytest.raises(LLMCalcError, match="--cp 2: only fused SDPA"):
        context_comm(llama(2), BATCH, SEQ, 2, 2, impl="eager")
    windowed = ModelConfig.from_dict(tiny(sliding_window=4))
    with pytest.raises(LLMCalcError, match="--cp 2: .*sliding window"):
        context_saved_activations(windowed, BATCH, SEQ, 2, 0, 4)


# --- real tensors, real collectives: two gloo processes ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_step(rank: int, cp: int, port: int, out: str) -> None:
    """One rank: its chunk's logits and loss, and the weight gradients summed over the ranks
    (each rank's loss weighted 1/cp: their mean is the whole sequence's loss)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=cp,
        timeout=timedelta(seconds=30),
    )  # fmt: skip
    try:
        from torch.distributed.device_mesh import init_device_mesh

        torch.manual_seed(0)
        cfg = llama(2)
        model = build_model(cfg, "cpu", torch.float32)
        tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ))
        targets = torch.randint(0, cfg.vocab_size, (BATCH, SEQ))
        apply_context_parallel(model, init_device_mesh("cpu", (cp,)))
        mine, my_targets = split_sequence(tokens, cp, rank), split_sequence(targets, cp, rank)
        logits = model(mine)
        loss = model(mine, my_targets)
        (loss / cp).backward()
        grads = [p.grad for p in model.parameters()]
        for grad in grads:
            dist.all_reduce(grad)
        all_logits = [torch.empty_like(logits) for _ in range(cp)]
        dist.all_gather(all_logits, logits.detach())
        losses = [torch.empty_like(loss) for _ in range(cp)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            torch.save(
                {"logits": torch.cat(all_logits, 1), "loss": torch.stack(losses).mean(),
                 "grads": grads},
                out,
            )  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_compute_what_one_process_computes():
    cp = 2
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pt")
        context = mp.start_processes(
            _rank_step, args=(cp, _free_port(), out), nprocs=cp, join=False, start_method="spawn"
        )
        for _ in range(60):  # bounded: 60 s at most
            if context.join(timeout=1):
                break
        else:
            for process in context.processes:
                process.kill()
            pytest.fail("the gloo ranks did not finish in 60 s")
        got = torch.load(out)
    torch.manual_seed(0)
    cfg = llama(2)
    model = build_model(cfg, "cpu", torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ))
    targets = torch.randint(0, cfg.vocab_size, (BATCH, SEQ))
    logits = model(tokens)
    loss = model(tokens, targets)
    loss.backward()
    torch.testing.assert_close(got["logits"], logits.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["loss"], loss.detach(), atol=1e-5, rtol=1e-5)
    for grad, param in zip(got["grads"], model.parameters(), strict=True):
        torch.testing.assert_close(grad, param.grad, atol=1e-5, rtol=1e-5)
