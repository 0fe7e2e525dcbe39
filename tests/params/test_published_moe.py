"""The mixture-of-experts presets against their publishers' figures: active parameters, the
per-component splits the publishers print, and DeepSeek-V3's multi-token-prediction module.

The exact integers are transformers 5.23's models built on meta from the published config.json
(Llama 4: its text_config), summed over named_parameters (buffers such as DeepSeek-V3's
e_score_correction_bias excluded); each is checked against the rounded figure its publisher
prints. The totals are in test_published_counts.py. Active = total minus (E − k)/E of the routed
experts (their biases included) in every MoE layer; publishers differ on whether the input
embedding counts, so both definitions are checked, and the one each publisher uses is named.
"""

import math

import pytest

from llmcalc.config.presets import load_config
from llmcalc.params.analysis import analyze_params

# preset -> (total, active with the input embedding, active without it, the publisher's definition)
ACTIVE = {
    # Mistral AI, "Mixtral of experts": "46.7B total parameters but only uses 12.9B parameters
    # per token"; the exact pair is what transformers' MixtralForCausalLM gives
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248, 12_748_853_248, "with"),
    # Qwen3-30B-A3B card: "30.5B in total and 3.3B activated" (3.35B, cut)
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704, 3_041_867_776, "with"),
    # DeepSeek-V3 README_WEIGHTS.md, main model: "671B" total, "36.6B (including 0.9B for the
    # output Head)" activated; the paper's "37B" fits both (36.6 rounded, 37.6 cut)
    "deepseek-v3": (671_026_404_352, 37_552_282_624, 36_625_603_584, "without"),
    # gpt-oss model card (arXiv 2508.10925), Table 1: 20.91B / 3.61B and 116.83B / 5.13B,
    # "Unembedding parameters are counted towards active, but not embeddings"
    "gpt-oss-20b": (20_914_757_184, 4_187_440_704, 3_608_307_264, "without"),
    "gpt-oss-120b": (116_829_156_672, 5_711_982_912, 5_132_849_472, "without"),
    # Llama 4 Scout (17B active, 16 experts): the text model; the card's 109B total includes the
    # vision tower and projector (871,932,416 in transformers), which the preset leaves out
    "llama-4-scout": (107_769_861_120, 17_172_894_720, 16_138_408_960, "with"),
}

# preset -> (total, active) as its publisher prints them, in billions (None: not printed for
# this model alone); active by the publisher's definition above
PRINTED = {
    "mixtral-8x7b": ("46.7", "12.9"),
    "qwen3-30b-a3b": ("30.5", "3.3"),
    "deepseek-v3": ("671", "36.6"),
    "gpt-oss-20b": ("20.91", "3.61"),
    "gpt-oss-120b": ("116.83", "5.13"),
    "llama-4-scout": (None, "17"),
}


def printed_as(count: int, figure: str) -> bool:
    """Whether a publisher's figure in billions is `count` rounded, or cut, to its digits."""
    digits = len(figure.partition(".")[2])
    billions = count / 1e9
    cut = math.floor(billions * 10**digits) / 10**digits
    return figure in (f"{billions:.{digits}f}", f"{cut:.{digits}f}")


@pytest.fixture(scope="module")
def analyses():
    return {name: analyze_params(load_config(name)) for name in ACTIVE}


def counted_active(result, cfg):
    """Active from the counted model: its routed experts' tensors, (E − k)/E of them idle."""
    experts = result.counted.components["experts"]
    idle = experts * (cfg.n_experts - cfg.experts_per_token) // cfg.n_experts
    return result.counted.total - idle


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_total_and_active_parameters(analyses, name):
    total, active, without_input, _ = ACTIVE[name]
    result, cfg = analyses[name], load_config(name)
    assert result.formula.total.value == result.counted.total == total
    assert result.formula.active == counted_active(result, cfg) == active
    input_embedding = result.counted.components["token_embedding"]
    assert result.formula.active_without_input_embedding == without_input
    assert counted_active(result, cfg) - input_embedding == without_input
    assert result.mismatches == {}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_the_publishers_printed_figures(name):
    total, with_input, without_input, definition = ACTIVE[name]
    printed_total, printed_active = PRINTED[name]
    assert printed_total is None or printed_as(total, printed_total)
    assert printed_as(with_input if definition == "with" else without_input, printed_active)
    other = without_input if definition == "with" else with_input
    assert not printed_as(other, printed_active)  # the other definition would not print so


def test_qwen3_30b_a3b_non_embedding_is_29_9b(analyses):
    # the card: "Number of Parameters (Non-Embedding): 29.9B" (the input and output tables out)
    non_embedding = analyses["qwen3-30b-a3b"].formula.non_embedding
    assert non_embedding == 30_532_122_624 - 2 * 151936 * 2048
    assert f"{non_embedding / 1e9:.1f}" == "29.9"


@pytest.mark.parametrize(
    ("name", "mlp", "attention", "printed"),
    [
        # gpt-oss model card, Table 1: MLP (routed experts and router, biases included),
        # Attention (q, k, v, o with their biases, and the sinks), Embed + Unembed 1.16B; the
        # exact figures are transformers' GptOssForCausalLM
        ("gpt-oss-20b", 19_119_145_728, 637_203_456, ("19.12", "0.64")),
        ("gpt-oss-120b", 114_714_874_368, 955_805_184, ("114.71", "0.96")),
    ],
)
def test_gpt_oss_table_1(analyses, name, mlp, attention, printed):
    groups = analyses[name].groups
    assert groups["experts"] + groups["router"] == mlp
    assert groups["attention"] == attention
    assert groups["token_embedding"] == groups["lm_head"] == 579_133_440 == 201088 * 2880
    assert printed_as(mlp, printed[0]) and printed_as(attention, printed[1])
    assert printed_as(2 * 579_133_440, "1.16")


def test_qwen3_30b_a3b_split(analyses):
    # transformers' Qwen3MoeForCausalLM: attention (q/k norms apart) 905,969,664, the 48
    # routers 12,582,912, the routed experts 28,991,029,248, embedding = head = 311,164,928
    groups = analyses["qwen3-30b-a3b"].groups
    assert groups["attention"] == 905_969_664 == 48 * 2048 * (32 + 4 + 4 + 32) * 128
    assert groups["router"] == 12_582_912
    assert groups["experts"] == 28_991_029_248 == 48 * 128 * 3 * 2048 * 768
    assert groups["token_embedding"] == groups["lm_head"] == 311_164_928


def test_deepseek_v3_layers(analyses):
    # transformers' DeepseekV3ForCausalLM: a dense layer 583,483,392, an MoE layer
    # 11,507,286,016 (attention 187,107,328, routed experts 11,274,289,152); 3 dense, 58 MoE
    result = analyses["deepseek-v3"]
    assert result.formula.dense_layer.value == 583_483_392
    assert result.formula.per_layer.value == 11_507_286_016
    assert result.counted.per_layer[:4] == [583_483_392] * 3 + [11_507_286_016]
    assert len(result.counted.per_layer) == 61
    assert result.groups["experts"] == 58 * 11_274_289_152
    assert result.groups["attention"] + result.groups["norms"] == (
        61 * 187_107_328 + 61 * 2 * 7168 + 7168  # latent norms sit in attention in transformers
    )


def test_deepseek_v3_mtp_module_not_built():
    """README_WEIGHTS.md: one MTP module (num_nextn_predict_layers 1, checkpoint layer 61), "11.5B
    unique parameters (excluding the shared 0.9B Embedding and 0.9B output Head)": one more MoE
    layer, eh_proj (a 2d -> d linear, no bias) and three RMSNorms of d (enorm, hnorm,
    shared_head.norm). transformers builds none of it, nor does llmcalc: its size by hand from
    the preset's sizes. (The README's 11.5B is close to the layer alone, 11.51B; with eh_proj
    and the norms it is 11.61B.)"""
    cfg = load_config("deepseek-v3")
    d, h = cfg.d_model, cfg.n_heads
    attention = (
        d * cfg.q_lora_rank  # q_a_proj
        + cfg.q_lora_rank  # q_a_layernorm
        + cfg.q_lora_rank * h * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)  # q_b_proj
        + d * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)  # kv_a_proj_with_mqa
        + cfg.kv_lora_rank  # kv_a_layernorm
        + cfg.kv_lora_rank * h * (cfg.qk_nope_head_dim + cfg.v_head_dim)  # kv_b_proj
        + h * cfg.v_head_dim * d  # o_proj
    )
    assert attention == 187_107_328
    routed = cfg.n_experts * 3 * d * cfg.d_ff_expert
    shared = 3 * d * cfg.n_shared_experts * cfg.d_ff_expert
    moe_layer = attention + cfg.n_experts * d + routed + shared + 2 * d  # router, two norms
    assert moe_layer == 11_507_286_016
    mtp = moe_layer + d * 2 * d + 3 * d
    assert mtp == 11_610_067_968
    assert "11,610,067,968" in cfg.source
    total = analyze_params(cfg).formula.total.value
    assert total + mtp == 682_636_472_320


def test_docs_show_the_real_deepseek_v3_output():
    from typer.testing import CliRunner

    from llmcalc.cli import app
    from tests.conftest import as_printed, doc_example

    command = "$ llmcalc params deepseek-v3"
    result = CliRunner().invoke(app, ["params", "deepseek-v3"], env={"COLUMNS": "100"})
    assert doc_example(command) == command + "\n" + as_printed(result.stdout)
