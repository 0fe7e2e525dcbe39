"""Published parameter counts are tests: formula and the counted meta model must both hit them.

Each figure is the architecture's count (unique parameters; a tied head once; no buffers), taken
from the source named, and cross-checked against the model card where it states one.
"""

import pytest

from llmcalc.config.presets import builtin_names, load_config
from llmcalc.params.analysis import analyze_params

PUBLISHED = {
    # shared/seeds/000: the per-tensor table's "Total parameters"
    "notes-lm-128m": 128_625_408,
    # shared/seeds/003's config as built by its source code (its hand table's ~2.08M is wrong:
    # it drops the untied head and halves the MLP)
    "notes-small-7m": 7_078_144,
    # LLaMA-7B (seeds/002, d_ff from multiple_of=256); the same count as Llama-2-7B
    "llama-7b": 6_738_415_616,
    # Hugging Face GPT2LMHeadModel.num_parameters() (tied head counted once)
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    # Llama 2 model cards / config.json (6.7B, 13B, 69B)
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    # Llama 3 / 3.1 / 3.2 model cards (8.03B, 70.6B, 405.9B, 1.24B)
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "llama-3.2-1b": 1_235_814_400,
    # Mistral-7B-v0.1 and v0.2 (7.24B: the window adds no parameter), Qwen2.5-7B (7.61B),
    # Gemma-2B (2.51B, tied embeddings)
    "mistral-7b": 7_241_732_096,
    "mistral-7b-v0.1": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "gemma-2b": 2_506_172_416,
    # Gemma 2 9B model card: 9,241,705,984 (9.24B; also transformers' Gemma2ForCausalLM)
    "gemma-2-9b": 9_241_705_984,
    # Gemma 3 4B's language model: transformers' Gemma3ForCausalLM built from the model's
    # text_config (the card's 4.3B includes the 417M vision tower and projector)
    "gemma-3-4b": 3_880_263_168,
    # Qwen3-8B (card: 8.2B, 6.95B non-embedding), Phi-3-mini-4k-instruct (3.8B), OLMo-1B-hf (1B):
    # the cards round; the exact figures are transformers' models built from the same config.json
    # (tests/config/test_hf.py has the config.json forms)
    "qwen3-8b": 8_190_735_360,
    "phi-3-mini": 3_821_079_552,
    "olmo-1b": 1_176_764_416,
    # Mixture of experts (test_published_moe.py: active counts, the cards' rounded figures):
    # Mixtral 8x7B (Mistral AI: 46.7B), Qwen3-30B-A3B (card: 30.5B), DeepSeek-V3 without its MTP
    # module (README_WEIGHTS.md: 671B), gpt-oss (card, Table 1: 20.91B, 116.83B), Llama 4 Scout's
    # language model (the card's 109B includes the vision tower): transformers 5.23's models
    # built from the same config.json
    "mixtral-8x7b": 46_702_792_704,
    "qwen3-30b-a3b": 30_532_122_624,
    "deepseek-v3": 671_026_404_352,
    "gpt-oss-20b": 20_914_757_184,
    "gpt-oss-120b": 116_829_156_672,
    "llama-4-scout": 107_769_861_120,
}


def test_every_builtin_preset_has_a_published_count_and_a_source():
    assert sorted(PUBLISHED) == builtin_names()
    for name in builtin_names():
        assert load_config(name).source, f"{name} has no source"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_count(name):
    result = analyze_params(load_config(name))
    assert result.formula.total.value == PUBLISHED[name]
    assert result.counted.total == PUBLISHED[name]
    assert result.counted.fvcore_total == PUBLISHED[name]
    assert result.mismatches == {}


@pytest.mark.parametrize(
    ("name", "d_ff"),
    [
        ("llama-7b", 11008),
        ("llama-2-13b", 13824),
        ("llama-2-70b", 28672),
        ("llama-3-8b", 14336),
        ("llama-3-70b", 28672),
        ("llama-3.1-405b", 53248),
        ("notes-small-7m", 682),
    ],
)
def test_llama_rule_gives_the_published_d_ff(name, d_ff):
    cfg = load_config(name)
    assert cfg.multiple_of is not None  # these presets state the rule, not d_ff
    assert cfg.d_ff == d_ff
