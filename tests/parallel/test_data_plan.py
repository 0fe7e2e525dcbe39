"""What each ZeRO stage shards, on the fake process group: a rank's weights and optimizer state
are exactly its FSDP2 chunks (dim 0 in ceil(dim0 / N)-row chunks, the shard's storage padded),
and bad options are refused in one line."""

import pytest
import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.device_mesh import init_device_mesh
from torch.testing._internal.distributed.fake_pg import FakeStore

from llmcalc.errors import LLMCalcError
from llmcalc.model.transformer import build_model
from llmcalc.parallel.data_plan import apply_data_parallel, chunk_rows
from llmcalc.parallel.data_trace import data_parallel_step
from tests.parallel.test_gloo import CFG, PER_RANK, SEQ

WORLD = 4


def chunks(rank: int) -> tuple[int, int, int]:
    """(bytes of this rank's rows, of its padded rows, its non-empty chunks) over the model."""
    own = padded = count = 0
    for param in build_model(CFG, "meta").parameters():
        first, end, rows = chunk_rows(param.shape[0], WORLD, rank)
        row = param[0].numel() * 4
        own, padded, count = own + (end - first) * row, padded + rows * row, count + (end > first)
    return own, padded, count


@pytest.mark.parametrize("rank", [0, 3])  # rank 3 holds the short chunks (85 and 66 rows)
def test_each_stage_shards_what_the_table_says(rank):
    own, padded, count = chunks(rank)
    weights = sum(p.numel() * 4 for p in build_model(CFG, "meta").parameters())
    dist.init_process_group("fake", rank=rank, world_size=WORLD, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        for zero in (0, 1, 3):
            with FakeTensorMode():
                model = build_model(CFG, "cpu", torch.float32)
                tokens = torch.randint(0, CFG.vocab_size, (PER_RANK, SEQ))
                step = data_parallel_step(model, mesh, zero, tokens)
            held = step.memory.phases["optimizer"].categories
            steps = 4 * (count if zero else 21)  # AdamW's step counts: one fp32 scalar each
            # the state is the rank's own rows; FSDP2's shards and its gradients (views of the
            # reduce-scatter's output) are padded storages
            assert held["optimizer"] == 2 * (own if zero else weights) + steps, zero
            assert held["weights"] == (padded if zero == 3 else weights), zero
            assert held["gradients"] == (padded if zero == 3 else weights), zero
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("zero", "offload", "precision", "message"),
    [
        (4, "none", "fp32", "--zero 4"),
        (3, "disk", "fp32", "--offload disk"),
        (1, "params", "fp32", "--offload params with --zero 1"),
        (3, "none", "fp16", "--precision fp16"),
    ],
)
def test_bad_options_are_refused(zero, offload, precision, message):
    with pytest.raises(LLMCalcError, match=message):
        apply_data_parallel(torch.nn.Module(), None, zero, offload, precision)
