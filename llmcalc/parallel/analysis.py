"""Per-GPU memory and communication of a layout, predicted and (on request) traced on the fake
process group, side by side."""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.parallel.comm import Communication, communication
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.memory import ParallelMemory, parallel_memory


@dataclass(frozen=True)
class ParallelAnalysis:
    config: ModelConfig
    layout: Layout
    batch: int  # the micro-batch
    seq: int
    precision: str
    optimizer: str
    checkpointing: str
    attention: str
    memory: ParallelMemory
    comm: Communication
    traced: object | None = None  # parallel/trace.py's TracedParallel

    @property
    def tokens_per_step(self) -> int:
        """Tokens one step trains on, over all GPUs."""
        layout = self.layout
        return layout.dp * layout.microbatches * self.batch * self.seq


def analyze_parallel(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    precision: str = "mixed",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
    trace: bool = False,
) -> ParallelAnalysis:
    setup = dict(
        batch=batch,
        seq=seq,
        precision=precision,
        optimizer=optimizer,
        checkpointing=checkpointing,
        attention=attention,
    )
    memory = parallel_memory(cfg, layout, **setup)
    comm = communication(cfg, layout, batch, seq, precision, checkpointing)
    traced = None
    if trace:
        from llmcalc.parallel.trace import trace_parallel

        traced = trace_parallel(cfg, layout, **setup)
    return ParallelAnalysis(cfg, layout, memory=memory, comm=comm, traced=traced, **setup)
