"""Data parallelism with ZeRO 0-3 in real processes on the gloo backend (CPU, tests/parallel/
gloo.py), against one process on the whole batch (the step is right) and against the fake process
group on fake tensors (the traced memory and the collectives are the real ones)."""

import pytest
import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.testing._internal.distributed.fake_pg import FakeStore

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.train_step import create_optimizer_state, make_optimizer, training_step
from llmcalc.model.transformer import build_model
from llmcalc.parallel.data_trace import data_parallel_step
from tests.conftest import tiny
from tests.parallel.gloo import run_gloo

CFG = ModelConfig.from_dict(tiny(vocab_size=66))  # MLP rows 85 and vocab 66: uneven chunks
PER_RANK, SEQ = 2, 16


def global_batch(world: int) -> torch.Tensor:
    return torch.randint(
        0, CFG.vocab_size, (PER_RANK * world, SEQ), generator=torch.Generator().manual_seed(1)
    )


def dtype(job: tuple) -> torch.dtype:
    """ "mixed" builds the model in bf16 at ZeRO 0 and 1, in fp32 at 2 and 3 (FSDP2's way)."""
    zero, _, _, precision = job
    return torch.bfloat16 if precision == "mixed" and zero < 2 else torch.float32


def full_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for name, p in model.named_parameters()
    }


def summary(step) -> dict:  # noqa: ANN001
    phases = {name: (p.total, p.categories) for name, p in step.memory.phases.items()}
    return dict(memory=phases, collectives=step.collectives.summary())


# -- the processes -------------------------------------------------------------------------------


def train(rank: int, world: int, jobs: list) -> dict:
    """This rank's results of `jobs` [(zero, optimizer, offload, precision)] in a real process
    group."""
    mesh = init_device_mesh("cpu", (world,))
    results = {}
    for job in jobs:
        torch.manual_seed(0)
        model = build_model(CFG, "cpu", dtype(job))
        tokens = global_batch(world).chunk(world)[rank].clone()  # its own storage
        step = data_parallel_step(model, mesh, *job[:1], tokens, *job[1:])
        results[job] = dict(summary(step), losses=step.losses, params=full_params(model))
    return results


# -- the references ------------------------------------------------------------------------------


def single_process(world: int, optimizer: str) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(CFG, "cpu", torch.float32)
    opt = make_optimizer(list(model.parameters()), optimizer)
    create_optimizer_state(model, opt)
    losses = []

    def loss_fn(module, tokens, targets):  # noqa: ANN001, ANN202
        loss = module(tokens, targets)
        losses.append(loss.item())
        return loss

    training_step(model, opt, global_batch(world), loss_fn=loss_fn)
    return losses[0], full_params(model)


def fake_process_group(world: int, rank: int, jobs: list) -> dict:
    """The same steps as rank `rank` on the fake process group, on fake tensors."""
    dist.init_process_group("fake", rank=rank, world_size=world, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (world,))
        results = {}
        for job in jobs:
            with FakeTensorMode():
                model = build_model(CFG, "cpu", dtype(job))
                tokens = torch.randint(0, CFG.vocab_size, (PER_RANK, SEQ))
                results[job] = summary(data_parallel_step(model, mesh, *job[:1], tokens, *job[1:]))
        return results
    finally:
        dist.destroy_process_group()


# -- the checks ----------------------------------------------------------------------------------

JOBS = [(zero, opt, "none", "fp32") for zero in (0, 1, 2, 3) for opt in ("adamw", "sgd")]
JOBS += [(1, "adamw", "optimizer", "fp32"), (3, "adamw", "optimizer", "fp32")]
JOBS += [(3, "adamw", "params", "fp32")]
JOBS += [(zero, "adamw", "none", "mixed") for zero in (0, 1, 2, 3)]
JOBS += [(1, "adamw", "optimizer", "mixed")]


def check_world(world: int, fake_ranks: list[int]) -> None:
    # the fake runs first: the processes forked next find FSDP2 and dynamo imported and warm
    adamw = [job for job in JOBS if job[1] == "adamw"]
    fake = {rank: fake_process_group(world, rank, adamw) for rank in fake_ranks}
    real = run_gloo(world, train, JOBS)
    references = {optimizer: single_process(world, optimizer) for optimizer in ("adamw", "sgd")}
    for job in JOBS:
        loss, params = references[job[1]]
        ranks = [r[job] for r in real]
        mean = sum(r["losses"][0] for r in ranks) / world
        if job[3] == "mixed":  # bf16 compute: the loss to bf16's precision
            assert mean == pytest.approx(loss, abs=2e-2), job
            continue
        assert mean == pytest.approx(loss, abs=1e-6), job
        for r in ranks:  # every rank holds the single process's updated parameters
            for name, value in params.items():
                torch.testing.assert_close(r["params"][name], value, atol=1e-5, rtol=0)
    for rank in fake_ranks:
        for job, traced in fake[rank].items():
            assert real[rank][job]["memory"] == traced["memory"], (world, rank, job)
            assert real[rank][job]["collectives"] == traced["collectives"], (world, rank, job)


def test_zero_stages_on_two_gloo_processes():
    check_world(2, fake_ranks=[0, 1])


@pytest.mark.slow
def test_zero_stages_on_four_gloo_processes():
    check_world(4, fake_ranks=[0, 3])
