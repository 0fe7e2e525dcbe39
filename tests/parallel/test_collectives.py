"""The collective recorder sees every kind of collective, eager (c10d) and functional, and counts
its bytes by the stated convention: the same records on the fake process group and on gloo."""

import pytest
import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch.testing._internal.distributed.fake_pg import FakeStore

from llmcalc.parallel.collectives import CollectiveRecorder, classify
from tests.parallel.gloo import run_gloo

ROW = 4 * 4  # bytes of one row of 4 fp32


def issue(rank: int, world: int) -> list[tuple[str, int, str]]:
    """One of each collective, from this rank, recorded."""
    x, y, a = torch.ones(3, 4), torch.ones(world * 3, 4), torch.ones(world * 2, 4)
    group = dist.group.WORLD
    with CollectiveRecorder() as recorder:
        recorder.phase = "eager"
        dist.all_gather_into_tensor(torch.empty(world * 3, 4), x)
        dist.reduce_scatter_tensor(torch.empty(3, 4), y)
        dist.all_reduce(x)
        dist.all_to_all_single(torch.empty_like(a), a)
        if rank == 0:
            dist.send(x, 1)
            dist.isend(x, 1).wait()
        elif rank == 1:
            dist.recv(x, 0)
            dist.irecv(x, 0).wait()
        recorder.phase = "functional"
        funcol.all_gather_tensor(x, 0, group).wait()
        funcol.reduce_scatter_tensor(y, "sum", 0, group).wait()
        funcol.all_reduce(x, "sum", group).wait()
        funcol.all_to_all_single(a, None, None, group).wait()
    return [(r.phase, r.kind, r.nbytes) for r in recorder.records]


def expected(rank: int, world: int) -> list[tuple[str, str, int]]:
    p2p = [("eager", "point-to-point", 3 * ROW)] * 2 if rank < 2 else []
    return [
        ("eager", "all-gather", world * 3 * ROW),  # the gathered output
        ("eager", "reduce-scatter", world * 3 * ROW),  # the input
        ("eager", "all-reduce", 3 * ROW),
        ("eager", "all-to-all", world * 2 * ROW),  # the input
        *p2p,
        ("functional", "all-gather", world * 3 * ROW),
        ("functional", "reduce-scatter", world * 3 * ROW),
        ("functional", "all-reduce", 3 * ROW),
        ("functional", "all-to-all", world * 2 * ROW),
    ]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_recorder_on_the_fake_process_group(rank):
    dist.init_process_group("fake", rank=rank, world_size=3, store=FakeStore())
    try:
        assert issue(rank, 3) == expected(rank, 3)
    finally:
        dist.destroy_process_group()


def test_recorder_on_gloo():
    assert run_gloo(3, issue) == [expected(rank, 3) for rank in range(3)]


def test_other_ops_are_not_collectives():
    assert classify("aten::mm", (torch.ones(1),)) is None
    assert classify("_c10d_functional::wait_tensor", (torch.ones(1),)) is None
