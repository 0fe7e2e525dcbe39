"""Mixture-of-experts and latent-attention fields that do not fit, set on the published presets
with `--set`: each is one `Error:` line that starts by naming the field, exit 2. The YAML forms,
and some lists such as moe_layers, are files in bad_inputs/."""

import json

import pytest

from tests.conftest import assert_one_line_error

# "preset --set field=value ..." -> the start of the message after "Error: preset (with --set): "
CASES = {
    # the top-k larger than the experts, or none
    "mixtral-8x7b experts_per_token=9": "field 'experts_per_token' = 9: the top-k must be in "
    "1 .. n_experts = 8",
    "qwen3-30b-a3b experts_per_token=0": "field 'experts_per_token' = 0: the top-k must be in 1 ..",
    "gpt-oss-20b n_experts=3": "field 'experts_per_token' = 4: the top-k must be in 1 .. n_experts = 3",
    # shared experts without routed ones
    "llama-3-8b n_shared_experts=1": "field 'n_shared_experts' = 1 without routed experts",
    "llama-4-scout n_experts=0 experts_per_token=null": "field 'n_shared_experts' = 1 without routed",
    # MoE layers that leave none
    "deepseek-v3 first_dense_layers=61": "no layer is MoE: first_dense_layers = 61 and moe_every = 1 "
    "leave none of the 61 layers",
    "mixtral-8x7b moe_every=33": "no layer is MoE: first_dense_layers = 0 and moe_every = 33",
    "mixtral-8x7b moe_every=0": "field 'moe_every' = 0: must be a positive integer",
    # MoE fields on a dense model, or without what they act on
    "llama-3-8b experts_per_token=2": "field 'experts_per_token' = 2 has no effect with n_experts = 0",
    "mistral-7b router_score=sigmoid": "field 'router_score' = 'sigmoid' has no effect with n_experts",
    "qwen3-8b d_ff_expert=768": "field 'd_ff_expert' = 768 has no effect with n_experts = 0",
    "mixtral-8x7b n_experts=0": "field 'experts_per_token' = 2 has no effect with n_experts = 0",
    "mixtral-8x7b d_ff_shared=14336": "field 'd_ff_shared' = 14336 has no effect with n_shared_experts",
    "gpt-oss-20b score_correction_bias=true": "field 'score_correction_bias' = true biases the choice "
    "among sigmoid scores (DeepSeek-V3); it needs router_score 'sigmoid', not 'topk_softmax'",
    "deepseek-v3 routed_scaling=0": "field 'routed_scaling' = 0.0: must be positive",
    "mixtral-8x7b router_score=sparsemax": "field 'router_score' = 'sparsemax': allowed values are "
    "softmax, sigmoid, topk_softmax, topk_sigmoid",
    # latent-attention sizes that do not fit
    "deepseek-v3 qk_rope_head_dim=63": "field 'qk_rope_head_dim' = 63: RoPE rotates features in "
    "pairs; it must be even",
    "deepseek-v3 kv_lora_rank=7168": "field 'kv_lora_rank' = 7168: the latent must be smaller than "
    "d_model = 7168",
    "deepseek-v3 n_heads=1": "field 'kv_lora_rank' = 512: the latent must be smaller than d_model = "
    "7168 and than the keys and values it compresses, n_heads·(qk_nope_head_dim + v_head_dim) = 256",
    "deepseek-v3 q_lora_rank=7168": "field 'q_lora_rank' = 7168: the query latent must be smaller "
    "than d_model = 7168",
    "deepseek-v3 head_dim=128": "field 'head_dim' = 128 does not apply to latent attention",
    "deepseek-v3 n_kv_heads=8": "field 'n_kv_heads' = 8: latent attention decompresses keys and",
    "deepseek-v3 qk_norm=head": "field 'qk_norm' = 'head' does not apply to latent attention",
    "deepseek-v3 position=alibi": "field 'position' = 'alibi' does not apply to latent attention",
    "deepseek-v3 v_head_dim=null": "field 'v_head_dim' is required with kv_lora_rank",
    # a latent size without kv_lora_rank
    "deepseek-v3 kv_lora_rank=null": "field 'q_lora_rank' = 1536 is a latent-attention size and has "
    "no effect without kv_lora_rank",
    "llama-3-8b qk_rope_head_dim=64": "field 'qk_rope_head_dim' = 64 is a latent-attention size",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_moe_or_mla_field_is_one_error_line(runner, case):
    preset, *sets = case.split()
    args = ["params", preset] + [arg for field in sets for arg in ("--set", field)]
    assert_one_line_error(runner, args, f"Error: {preset} (with --set): {CASES[case]}")


def test_set_takes_a_list_in_brackets(runner):
    from llmcalc.cli import app

    result = runner.invoke(app, ["params", "mixtral-8x7b", "--set", "moe_layers=[0,2]", "--json"])
    assert result.exit_code == 0, result.stderr
    # 2 of 32 layers MoE, the other 30 dense MLPs of d_ff = 14336 (1 expert's width)
    assert json.loads(result.stdout)["layers_moe"] == 2
    assert_one_line_error(
        runner, ["params", "mixtral-8x7b", "--set", "moe_layers=[0,x]"], "list of integers"
    )
