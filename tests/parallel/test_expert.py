"""Expert parallelism: the closed form (llmcalc/parallel/expert.py) against one training step of
the real model split by parallel/expert_plan.py, on torch's fake process group under
FakeTensorMode (per-rank parameters, saved activations and every all-to-all's bytes, exactly),
and the expert-parallel model on real gloo processes against the single-process model."""

import multiprocessing

import pytest
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.testing._internal.distributed.fake_pg import FakeStore

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.formula import PRECISION
from llmcalc.parallel.expert import (
    activations_per_rank,
    all_to_all_bytes,
    all_to_alls,
    check_expert_parallel,
    local_rows,
    parameters_per_rank,
)
from llmcalc.parallel.expert_plan import trace_expert_parallel
from tests.conftest import tiny
from tests.parallel.expert_worker import ep_worker, free_port

MIXTRAL = tiny(n_experts=8, experts_per_token=2, d_ff_expert=24)
DEEPSEEK = tiny(  # latent attention, a dense first layer, a shared expert, sigmoid + correction
    n_experts=8,
    experts_per_token=3,
    d_ff_expert=16,
    n_layers=3,
    first_dense_layers=1,
    n_shared_experts=1,
    router_score="sigmoid",
    score_correction_bias=True,
    normalize_topk=True,
    routed_scaling=2.5,
    kv_lora_rank=16,
    q_lora_rank=24,
    qk_nope_head_dim=8,
    qk_rope_head_dim=4,
    v_head_dim=12,
)
QWEN = tiny(  # GELU experts with biases, two gated shared experts
    n_experts=8,
    experts_per_token=2,
    d_ff_expert=24,
    activation="gelu",
    expert_bias=True,
    router_bias=True,
    n_shared_experts=2,
    shared_expert_gate=True,
)
MODELS = {"mixtral": MIXTRAL, "deepseek": DEEPSEEK, "qwen": QWEN}
BATCH, SEQ = 1, 7  # 14 or 21 assignments over 8 experts: the balanced rule's remainder


@pytest.fixture
def fake_group(request):
    ep, rank = request.param
    dist.init_process_group("fake", rank=rank, world_size=ep, store=FakeStore())
    try:
        yield ep, rank, init_device_mesh("cpu", (ep,))  # outside FakeTensorMode
    finally:
        dist.destroy_process_group()


RANKS = [(2, 0), (2, 1), (4, 0), (4, 3), (8, 0), (8, 5)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("fake_group", RANKS, indirect=True, ids=lambda r: f"ep{r[0]}-rank{r[1]}")
def test_fake_group_step_matches_the_closed_form_exactly(fake_group, name, precision):
    ep, rank, mesh = fake_group
    cfg = ModelConfig.from_dict(MODELS[name])
    traced, collectives = trace_expert_parallel(cfg, mesh, BATCH, SEQ, precision)
    p = PRECISION[precision]
    weights = traced.phases["forward"].categories["weights"]
    assert weights == parameters_per_rank(cfg, ep) * p.weight
    assert traced.saved == activations_per_rank(cfg, BATCH, SEQ, ep, rank, precision)
    assert {c.op for c in collectives} == {"all_to_all_single"}
    recorded = [(c.phase, c.sent, c.received) for c in collectives]
    predicted = all_to_alls(cfg, BATCH, SEQ, ep, rank, precision)
    assert sorted(recorded) == sorted(
        (op.phase, op.sent, op.received) for op in predicted for _ in range(op.times)
    )
    total = all_to_all_bytes(cfg, BATCH, SEQ, ep, rank, precision)
    assert sum(c.sent for c in collectives) == total


@pytest.mark.parametrize("fake_group", [(4, 1)], indirect=True)
def test_full_checkpointing_runs_every_forward_all_to_all_again(fake_group):
    ep, rank, mesh = fake_group
    cfg = ModelConfig.from_dict(DEEPSEEK)
    traced, collectives = trace_expert_parallel(cfg, mesh, 2, SEQ, "bf16", checkpointing="full")
    assert traced.saved == activations_per_rank(cfg, 2, SEQ, ep, rank, "bf16", "full")
    predicted = all_to_alls(cfg, 2, SEQ, ep, rank, "bf16", "full")
    phase = {"recompute": "backward"}  # the recomputation runs inside the backward
    assert sorted((c.phase, c.sent, c.received) for c in collectives) == sorted(
        (phase.get(op.phase, op.phase), op.sent, op.received)
        for op in predicted
        for _ in range(op.times)
    )


def test_known_figures():
    """Mixtral-like, ep 4, 14 tokens, fp32: 28 assignments over 8 experts are 4, 4, 4, 4, 3, 3,
    3, 3 rows from each rank; rank 0 (experts 0, 1) gets 4 · 8 = 32 rows, rank 3 gets 24."""
    cfg = ModelConfig.from_dict(MIXTRAL)
    assert local_rows(cfg, 14, 4, 0) == 32 and local_rows(cfg, 14, 4, 3) == 24
    # per layer: counts 8·8 each way; dispatch 28·32·4 out, 32·32·4 in; combine the reverse;
    # the backward both again: 64 + 2·(3584 + 4096) = 15424, times 2 MoE layers
    assert all_to_all_bytes(cfg, 1, 14, 4, 0) == 2 * (64 + 2 * (3584 + 4096))
    expert = 2 * 24 * 32 + 32 * 24  # gate_up (2f, d) and down (d, f)
    assert parameters_per_rank(cfg, 1) - parameters_per_rank(cfg, 4) == 2 * 6 * expert


@pytest.mark.slow
@pytest.mark.parametrize(
    "fake_group,preset,seq",
    [((64, 63), "deepseek-v3", 512), ((8, 5), "mixtral-8x7b", 1024)],
    indirect=["fake_group"],
)
def test_full_size_presets_match_the_closed_form_exactly(fake_group, preset, seq):
    """DeepSeek-V3 on 64 ranks (4 experts each, regrouped by the permutation; 512 · 8
    assignments over 256 experts), Mixtral 8x7B on 8 (one expert each), bf16: 10-40 s each."""
    from llmcalc.config.presets import load_config

    ep, rank, mesh = fake_group
    cfg = load_config(preset)
    traced, collectives = trace_expert_parallel(cfg, mesh, 1, seq, "bf16")
    assert traced.phases["forward"].categories["weights"] == parameters_per_rank(cfg, ep) * 2
    assert traced.saved == activations_per_rank(cfg, 1, seq, ep, rank, "bf16")
    assert sum(c.sent for c in collectives) == all_to_all_bytes(cfg, 1, seq, ep, rank, "bf16")


@pytest.mark.parametrize(
    "changes,ep,message",
    [
        ({}, 3, "--ep 3: does not divide n_experts 8"),
        ({}, 0, "--ep 0"),
        ({"n_experts": 0, "experts_per_token": None, "d_ff_expert": None}, 2, "--ep 2: "),
    ],
)
def test_bad_ep_is_refused_naming_the_option(changes, ep, message):
    cfg = ModelConfig.from_dict({**MIXTRAL, **changes})
    with pytest.raises(LLMCalcError, match=message):
        check_expert_parallel(cfg, ep)
    with pytest.raises(LLMCalcError, match="--ep"):
        parameters_per_rank(cfg, ep)


# --- real processes ---------------------------------------------------------------------------


def test_gloo_expert_parallel_equals_the_single_process_model():
    """Two gloo processes, each on its own tokens through experts split 2 + 2 (real routing:
    uneven counts): logits, loss and every gradient equal the single-process model's (an
    expert's gradient summed over both ranks' tokens) within 1e-5."""
    context = multiprocessing.get_context("spawn")
    results, port, world = context.Queue(), free_port(), 2
    workers = [
        context.Process(target=ep_worker, args=(r, world, port, results)) for r in range(world)
    ]
    for worker in workers:
        worker.start()
    try:
        got = sorted(results.get(timeout=60) for _ in range(world))
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    for rank, logits, loss, gradients, _ in got:
        assert loss is not None, f"rank {rank}: {logits}"
        assert logits < 1e-5 and loss < 1e-5 and gradients < 1e-5, (rank, logits, loss, gradients)
    routed = [counts for *_, counts in got]
    assert any(counts != [12, 12, 12, 12] for counts in routed), routed  # not the balanced rule
