"""The machines `llmcalc plan` lays a job out on: per GPU kind, the memory each GPU has and the
bandwidth of the two links a collective can cross, from the vendors' datasheets. No torch.

Bandwidths are per GPU and per direction, in bytes/s: what one GPU can send while it receives as
much (the figure a ring or tree collective is bound by). Datasheets print NVLink and xGMI as
bidirectional totals (halved here) and network ports in Gb/s (divided by 8 here). Memory is the
datasheet's figure, which NVIDIA and AMD print in GB but which the devices report in binary units
(an H100 "80GB" shows 81,559 MiB in nvidia-smi), so it is taken as GiB. Peak FLOP/s come from
config/hardware.py's GPUS table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from llmcalc.config.hardware import GPUS
from llmcalc.errors import LLMCalcError, quote
from llmcalc.parallel.layout import Layout

GB = 10**9
GIB = 2**30
GPUS_PER_NODE = 8  # DGX/HGX A100, H100, H200, B200 and the MI300X platform: 8 GPUs a node


@dataclass(frozen=True)
class Machine:
    gpu: str
    memory: int  # bytes of device memory per GPU
    intra_node: float  # bytes/s per GPU per direction inside a node (NVLink, xGMI)
    inter_node: float  # bytes/s per GPU per direction between nodes (InfiniBand, RoCE)
    gpus_per_node: int
    peak_flops: dict[str, float]  # dtype -> dense FLOP/s
    sources: tuple[str, ...]


def _machine(gpu: str, memory_gib: int, nvlink_bidir_gbs: float, nic_gbit: float, *sources: str):
    return Machine(
        gpu,
        memory_gib * GIB,
        nvlink_bidir_gbs * GB / 2,
        nic_gbit * GB / 8,
        GPUS_PER_NODE,
        {dtype: tflops * 1e12 for dtype, tflops in GPUS[gpu].peak_tflops.items()},
        (GPUS[gpu].source, *sources),
    )


MACHINES = {
    machine.gpu: machine
    for machine in (
        _machine(
            "a100",
            80,
            600,
            200,
            "NVIDIA A100 datasheet: 80GB HBM2e, NVLink 600 GB/s (bidirectional)",
            "NVIDIA DGX A100 datasheet: 8 ConnectX-6 200 Gb/s HDR InfiniBand, one per GPU",
        ),
        _machine(
            "h100",
            80,
            900,
            400,
            "NVIDIA H100 datasheet (SXM): 80GB HBM3, NVLink 900 GB/s (bidirectional)",
            "NVIDIA DGX H100 datasheet: 8 ConnectX-7 400 Gb/s NDR InfiniBand, one per GPU",
        ),
        _machine(
            "h200",
            141,
            900,
            400,
            "NVIDIA H200 datasheet (SXM): 141GB HBM3e, NVLink 900 GB/s (bidirectional)",
            "NVIDIA HGX H200: 8 ConnectX-7 400 Gb/s NDR InfiniBand, one per GPU",
        ),
        _machine(
            "b200",
            180,
            1800,
            400,
            "NVIDIA DGX B200 datasheet: 1,440GB HBM3e over 8 GPUs (180GB each), fifth-generation"
            " NVLink 1.8 TB/s per GPU (bidirectional)",
            "NVIDIA DGX B200 datasheet: 8 ConnectX-7 400 Gb/s InfiniBand ports, one per GPU",
        ),
        _machine(
            "mi300x",
            192,
            896,
            400,
            "AMD Instinct MI300X datasheet: 192GB HBM3, Infinity Fabric (xGMI) 896 GB/s aggregate"
            " (7 links × 128 GB/s bidirectional, one to each other GPU of the node)",
            "AMD Instinct MI300X platform: one 400 Gb/s NIC per GPU (RoCE or InfiniBand)",
        ),
    )
}


def machine(
    gpu: str,
    memory: int | None = None,
    intra_node: float | None = None,
    inter_node: float | None = None,
    gpus_per_node: int | None = None,
) -> Machine:
    """The datasheet machine of a GPU kind (any case: H100, h100), with any figure overridden."""
    known = gpu.lower()
    if known not in MACHINES:
        raise LLMCalcError(
            f"--gpu {quote(gpu)}: unknown GPU for plan; known: {', '.join(MACHINES)}"
        )
    changes = dict(
        memory=memory, intra_node=intra_node, inter_node=inter_node, gpus_per_node=gpus_per_node
    )
    for option, value in (
        ("--intra-node-bw", intra_node),
        ("--inter-node-bw", inter_node),
        ("--gpus-per-node", gpus_per_node),
        ("--gpu-mem", memory),
    ):
        if value is not None and not value > 0:
            raise LLMCalcError(f"{option} {quote(value)}: must be positive")
    return dataclasses.replace(
        MACHINES[known], **{key: value for key, value in changes.items() if value is not None}
    )


def peak(machine: Machine, precision: str) -> tuple[float, str]:
    """(peak FLOP/s, dtype) of the matmuls of a training step in `precision`: bf16 for mixed and
    bf16, fp32 for fp32."""
    dtype = "fp32" if precision == "fp32" else "bf16"
    if dtype not in machine.peak_flops:
        raise LLMCalcError(
            f"--precision {precision}: no {machine.gpu} {dtype} peak in its datasheet"
        )
    return machine.peak_flops[dtype], dtype


def span(layout: Layout, group: str) -> int:
    """Consecutive ranks a group's members spread over (tp innermost, then cp, dp, pp; the ep
    ranks the innermost of dp · cp). Neighbouring pipeline stages are tp · cp · dp ranks apart,
    so unless the whole pipeline sits in one node some of its sends cross nodes: the slowest
    send sets the pace."""
    tp, cp, dp = layout.tp, layout.cp, layout.dp
    return {
        "tp": tp,
        "cp": tp * cp,
        "ep": tp * layout.ep,
        "dp": tp * cp * dp,
        "pp": layout.world,
    }[group]


def link(machine: Machine, layout: Layout, group: str) -> tuple[float, str]:
    if span(layout, group) <= machine.gpus_per_node or layout.world <= machine.gpus_per_node:
        return machine.intra_node, "intra-node"
    return machine.inter_node, "inter-node"


def group_size(layout: Layout, group: str) -> int:
    """Ranks in one collective of a group; ZeRO's dp group is the dp · cp shard group."""
    return {
        "tp": layout.tp,
        "cp": layout.cp,
        "ep": layout.ep,
        "dp": layout.shard_group,
        "pp": 2,
    }[group]


def wire_bytes(row: Any, layout: Layout) -> int:
    """Bytes one GPU sends for a collective of `row.bytes` (the size torch's collective takes,
    comm.py) over a ring of n ranks: (n − 1)/n of an all-gather's output, a reduce-scatter's
    input or an all-to-all's input; 2(n − 1)/n of an all-reduce's tensor; a point-to-point
    transfer whole (Thakur et al. 2005, 'Optimization of Collective Communication Operations in
    MPICH'; NCCL's bus bandwidth uses the same factors)."""
    n = group_size(layout, row.group)
    if row.collective == "point-to-point":
        return row.bytes
    factor = 2 if row.collective == "all-reduce" else 1
    return factor * row.bytes * (n - 1) // n
