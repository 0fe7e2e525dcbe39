"""One gloo process of tests/parallel/test_expert.py's real expert-parallel run: it imports
only what the run needs (a spawned process imports this module, not the test's)."""

import copy
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from llmcalc.config.schema import ModelConfig
from llmcalc.model.transformer import build_model
from llmcalc.parallel.expert_plan import ExpertParallelExperts, apply_expert_parallel

REAL = dict(
    name="tiny",
    vocab_size=64,
    d_model=32,
    n_layers=2,
    n_heads=4,
    max_seq_len=16,
    n_experts=4,
    experts_per_token=2,
    d_ff_expert=24,
    n_shared_experts=1,
    expert_bias=True,
    normalize_topk=True,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ep_worker(rank: int, world: int, port: int, results) -> None:  # noqa: ANN001
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=20),
        )
        cfg = ModelConfig.from_dict(REAL)
        torch.manual_seed(0)  # the same weights on every rank
        reference = build_model(cfg, "cpu")
        model = apply_expert_parallel(copy.deepcopy(reference), init_device_mesh("cpu", (world,)))
        tokens = torch.randint(
            0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(rank)
        )
        targets = tokens.roll(-1, dims=1)
        routed = []  # rows per expert the router chose in the first MoE layer
        first = next(m for m in model.modules() if isinstance(m, ExpertParallelExperts))
        first.register_forward_hook(
            lambda _, args, __: routed.append(torch.bincount(args[2].flatten(), minlength=4))
        )
        logits = (model(tokens) - reference(tokens)).abs().max().item()
        loss, expected = model(tokens, targets), reference(tokens, targets)
        loss.backward()
        expected.backward()
        held = cfg.n_experts // world
        worst = 0.0
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            grad = q.grad
            if p.shape != q.shape:  # an expert slice: every rank's tokens reach it
                grad = grad.clone()
                dist.all_reduce(grad)
                grad = grad[rank * held : (rank + 1) * held]
            worst = max(worst, (p.grad - grad).abs().max().item())
        results.put((rank, logits, abs(loss.item() - expected.item()), worst, routed[0].tolist()))
    except Exception as error:  # noqa: BLE001
        results.put((rank, repr(error), None, None, None))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
