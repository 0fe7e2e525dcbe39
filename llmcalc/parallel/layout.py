"""How a training job is laid out on GPUs: the degree of each kind of parallelism, the ZeRO stage,
the pipeline schedule and what is offloaded, checked against the model and the batch. No torch.

The world is dp · tp · pp · cp GPUs (Megatron-LM's and torchtitan's convention). Expert
parallelism borrows its ranks from the data- and context-parallel ones (torchtitan's
`ep` divides `dp_shard · cp`), so it does not multiply the world. ZeRO shards model states over
the dp · cp ranks, as torchtitan's FSDP mesh does (context-parallel ranks hold the same weights).

`batch` is the micro-batch: sequences per data-parallel rank per micro-batch; one step runs
`microbatches` of them (the pipeline's micro-batches, or gradient accumulation without one).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.parallel.pipeline import SCHEDULES, check_pipeline

ZERO_STAGES = (0, 1, 2, 3)
OFFLOADS = ("none", "optimizer", "params")


@dataclass(frozen=True)
class Layout:
    dp: int = 1
    zero: int = 0
    tp: int = 1
    sp: bool = False
    pp: int = 1
    schedule: str = "1f1b"
    microbatches: int = 1
    virtual_stages: int = 1  # model chunks per pipeline rank (interleaved schedule)
    cp: int = 1
    ep: int = 1
    offload: str = "none"

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def shard_group(self) -> int:
        """Ranks that share (and under ZeRO split) one copy of the model states."""
        return self.dp * self.cp

    @property
    def stages(self) -> int:
        """Model chunks in the pipeline: pp · virtual stages."""
        return self.pp * self.virtual_stages

    def describe(self) -> str:
        parts = [f"dp {self.dp}", f"ZeRO-{self.zero}"]
        if self.tp > 1:
            parts.append(f"tp {self.tp}" + (" + sp" if self.sp else ""))
        if self.pp > 1:
            chunks = f", v {self.virtual_stages}" if self.schedule == "interleaved" else ""
            parts.append(f"pp {self.pp} {self.schedule}{chunks}")
        if self.cp > 1:
            parts.append(f"cp {self.cp}")
        if self.ep > 1:
            parts.append(f"ep {self.ep}")
        if self.offload != "none":
            parts.append(f"offload {self.offload}")
        return ", ".join(parts)


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LLMCalcError(f"{name} {value!r}: must be a whole number of at least 1")


def check_layout(cfg: ModelConfig, layout: Layout, seq: int, gpus: int | None = None) -> None:
    """Refuse a layout the model, the sequence or the GPU count cannot take, naming the option."""
    for name, value in (
        ("--dp", layout.dp),
        ("--tp", layout.tp),
        ("--pp", layout.pp),
        ("--cp", layout.cp),
        ("--ep", layout.ep),
        ("--microbatches", layout.microbatches),
        ("--virtual-stages", layout.virtual_stages),
    ):
        _positive(name, value)
    if layout.zero not in ZERO_STAGES:
        raise LLMCalcError(f"--zero {layout.zero!r}: must be one of 0, 1, 2, 3")
    if layout.schedule not in SCHEDULES:
        raise LLMCalcError(f"--schedule {layout.schedule!r}: must be one of {', '.join(SCHEDULES)}")
    if layout.offload not in OFFLOADS:
        raise LLMCalcError(f"--offload {layout.offload!r}: must be one of {', '.join(OFFLOADS)}")
    if gpus is not None:
        _positive("--gpus", gpus)
    if gpus is not None and layout.world != gpus:
        raise LLMCalcError(
            f"--gpus {gpus}: dp {layout.dp} × tp {layout.tp} × pp {layout.pp} × cp {layout.cp}"
            f" = {layout.world}; the degrees must multiply to the GPU count"
        )
    _check_tensor(cfg, layout)
    _check_pipeline(cfg, layout)
    if seq % layout.cp:
        raise LLMCalcError(f"--cp {layout.cp}: must divide the sequence length {seq}")
    if layout.ep > 1:
        _check_experts(cfg, layout)
    if layout.offload == "params" and layout.zero != 3:
        raise LLMCalcError(
            f"--offload params with --zero {layout.zero}: parameters are offloaded only when"
            " they are sharded (--zero 3, FSDP2's CPUOffloadPolicy)"
        )


def _check_tensor(cfg: ModelConfig, layout: Layout) -> None:
    tp = layout.tp
    if layout.sp and tp == 1:
        raise LLMCalcError(
            "--sp: sequence parallelism splits within a tensor-parallel group; give --tp 2 or more"
        )
    for field, value in (("n_heads", cfg.n_heads), ("n_kv_heads", cfg.n_kv_heads)):
        if value % tp:
            raise LLMCalcError(
                f"--tp {tp}: must divide {field} ({value}); each rank holds whole heads"
            )


def _check_pipeline(cfg: ModelConfig, layout: Layout) -> None:
    """torch's rules for its schedules (parallel/pipeline.py), and one of llmcalc's: an
    interleaved pipeline has at least two chunks per rank."""
    pp, v = layout.pp, layout.virtual_stages
    check_pipeline(cfg.n_layers, pp, layout.schedule, layout.microbatches, v)
    if layout.schedule == "interleaved" and pp > 1 and v < 2:
        raise LLMCalcError("--schedule interleaved: give --virtual-stages 2 or more")


def _check_experts(cfg: ModelConfig, layout: Layout) -> None:
    ep = layout.ep
    if not is_moe(cfg):
        raise LLMCalcError(f"--ep {ep}: {cfg.name} has no experts to distribute (a dense model)")
    if cfg.n_experts % ep:
        raise LLMCalcError(f"--ep {ep}: must divide n_experts ({cfg.n_experts})")
    if layout.shard_group % ep:
        raise LLMCalcError(
            f"--ep {ep}: expert-parallel ranks come from the dp × cp = {layout.shard_group}"
            " data ranks; it must divide them"
        )
