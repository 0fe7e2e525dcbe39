"""Known answer: ZeRO's Table 1 (Rajbhandari et al. 2020, arXiv 1910.02054): model-state memory per
GPU for a 7.5B-parameter model on N_d = 64 GPUs with mixed-precision Adam (K = 12)."""

import pytest

from llmcalc.parallel.states import zero_model_states, zero_paper_model_states

PSI, N_D = 7_500_000_000, 64
GB = 10**9  # the paper's GB is 10**9 bytes: 16 · 7.5e9 = 120 GB


@pytest.mark.parametrize(
    ("stage", "exact", "printed"),
    [
        (0, 120 * GB, "120"),  # baseline (2 + 2 + K) Ψ
        (1, 31_406_250_000, "31.4"),  # P_os: 2Ψ + 2Ψ + KΨ/N_d
        (2, 16_640_625_000, "16.6"),  # P_os+g: 2Ψ + (2 + K)Ψ/N_d
        (3, 1_875_000_000, "1.88"),  # P_os+g+p: (2 + 2 + K)Ψ/N_d (printed 1.88 GB)
    ],
)
def test_zero_table_1(stage, exact, printed):
    total = zero_paper_model_states(PSI, stage, N_D).total
    assert total == exact
    assert f"{total / GB:.3g}" == printed


def test_each_stage_partitions_one_more_state():
    states = [zero_model_states(2, 2, 12, stage, 4) for stage in range(4)]
    assert [(s.weights, s.gradients, s.optimizer) for s in states] == [
        (2, 2, 12),
        (2, 2, 3),
        (2, 1, 3),
        (1, 1, 3),
    ]
