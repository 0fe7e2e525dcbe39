"""config.json -> preset fields for the mixture-of-experts model_types: mixtral, qwen2_moe,
qwen3_moe, deepseek_v2, deepseek_v3 (multi-head latent attention), gpt_oss, llama4_text and the
llama4 composite (its text_config). hf.py registers them in MODEL_TYPES.

Each function follows transformers 5.23's configuration_<type>.py (field names, aliases, and the
class default where a field is missing) and modeling_<type>.py (which layers are MoE, which
biases, norms and shared experts each type builds); a field that changes a count, a FLOP or a
byte is mapped, or refused with one error naming it. Fields read as nothing because they change
no count: the router's group limits (DeepSeek's n_group/topk_group and topk_method change which
experts a token reaches, not how many), router_jitter_noise and the auxiliary-loss coefficients
(training-time noise and losses on the router logits), gpt-oss's clamped SwiGLU (swiglu_limit,
swiglu_alpha: element-wise), Llama 4's NoPE layers (no_rope_layers), its parameter-free L2 q/k
norm (use_qk_norm) and its query temperature tuning (attn_temperature_tuning, floor_scale,
attn_scale), and DeepSeek-V3's multi-token-prediction layer (num_nextn_predict_layers), which
transformers does not build either (it drops model.layers.61 on load).
"""

from __future__ import annotations

import sys
from typing import Any

from llmcalc.config.hf_fields import Fields, language_model
from llmcalc.config.hf_llama import llama_like
from llmcalc.config.hf_window import nullable, window_fields
from llmcalc.errors import LLMCalcError, quote

# transformers' RMSNorm of these families is LlamaRMSNorm's copy (the rows cast to the activation
# dtype before the weight); gpt-oss's multiplies first (GptOssRMSNorm: "main diff with Llama")
_LLAMA_NORM = {"norm_cast": "before_weight"}

# config.json fields of UNMODELLED (hf_fields.py) that these mappings read: no warning for them
_EXPERT_FIELDS = (
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
)


# Layers listed one by one (which are MoE, which attend through a window): far beyond any model,
# and short enough that a list of them is built at once
_MAX_LISTED = 100_000


def _listed_layers(f: Fields) -> int:
    """num_hidden_layers, for a type whose layers are decided one by one."""
    layers = f.need("num_hidden_layers")
    if layers > _MAX_LISTED:
        raise LLMCalcError(
            f"{f.where}: field 'num_hidden_layers' = {layers}: model_type "
            f"{f.data.get('model_type')!r} decides each layer's kind one by one; at most "
            f"{_MAX_LISTED:,} layers"
        )
    return layers


def _first(f: Fields, names: tuple[str, ...], default: Any) -> Any:
    """The first of `names` (a field and its aliases in transformers' attribute_map) the file
    states, else the class default."""
    for name in names:
        if f.has(name):
            return f.get(name, None)
    return default


def _layer_list(f: Fields, name: str, layers: int, values: tuple[int, ...] | None = None) -> Any:
    """A list field of layer indices (or, with `values`, one flag per layer), checked."""
    value = f.data.get(name)
    if value is None:
        return None
    if values is None:
        ok = isinstance(value, list) and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers for i in value
        )
        expected = f"a list of layer indices, each in 0 .. {layers - 1}"
    else:
        ok = isinstance(value, list) and len(value) == layers and all(v in values for v in value)
        expected = f"a list of {layers} entries, each {' or '.join(map(str, values))}"
    if not ok:
        raise LLMCalcError(f"{f.where}: field {name!r} = {quote(value)}: expected {expected}")
    return value


def _experts(f: Fields, names: tuple[str, ...], default: int, top_k: Any) -> dict[str, Any]:
    """n_experts and experts_per_token; `top_k` None: the file must state num_experts_per_tok."""
    experts = _first(f, names, default)
    k = f.need("num_experts_per_tok") if top_k is None else f.get("num_experts_per_tok", top_k)
    return {"n_experts": experts, "experts_per_token": k}


def _which_moe(layers: int, moe: list[int]) -> dict[str, Any]:
    """The MoE layers (sorted), in the fewest fields: every step-th layer, else their list."""
    step = moe[0] + 1
    if moe == list(range(step - 1, layers, step)):
        return {} if step == 1 else {"moe_every": step}
    return {"moe_layers": moe}


def _mixtral(f: Fields) -> dict[str, Any]:
    """Mixtral: every layer MoE, softmax over every expert then the top-k renormalised (always:
    there is no norm_topk_prob), no biases, no shared expert; intermediate_size is each expert's
    width (there is no dense MLP). sliding_window, when set, is every layer's window."""
    _listed_layers(f)
    return llama_like(
        f,
        kv_heads=8,  # MixtralConfig's default
        **_LLAMA_NORM,
        **window_fields(f),
        qkv_bias=False,
        out_bias=False,
        mlp_bias=False,
        **_experts(f, ("num_local_experts", "num_experts"), 8, 2),
        normalize_topk=True,
    )


def _qwen_moe_layers(f: Fields, layers: int) -> list[int]:
    """Qwen2/Qwen3-MoE: layer i is MoE when it is not in mlp_only_layers and (i + 1) is a
    multiple of decoder_sparse_step (Qwen2MoeDecoderLayer, Qwen3MoeDecoderLayer)."""
    step = f.get("decoder_sparse_step", 1)
    dense = set(_layer_list(f, "mlp_only_layers", layers) or [])
    return [i for i in range(layers) if i not in dense and (i + 1) % step == 0]


def _qwen_moe(f: Fields, experts: int, top_k: int, width: int) -> dict[str, Any]:
    """The MoE fields both Qwen MoE types share; {} where no layer is MoE (all dense, as
    transformers then builds them)."""
    layers = _listed_layers(f)
    moe = _qwen_moe_layers(f, layers)
    if not moe:
        return {}
    return {
        **_experts(f, ("num_experts", "num_local_experts"), experts, top_k),
        "d_ff_expert": f.get("moe_intermediate_size", width),
        "normalize_topk": f.get("norm_topk_prob", False),
        **_which_moe(layers, moe),
    }


def _qwen2_moe_window(f: Fields) -> dict[str, Any]:
    """Qwen2-MoE uses its window only with use_sliding_window, on the layers layer_types marks,
    by default layers i < max_window_layers with i + 1 odd (Qwen2MoeConfig.__post_init__)."""
    if not f.get("use_sliding_window", False):
        return {}
    if f.data.get("layer_types") is None:
        layers = _listed_layers(f)
        first_global = f.get("max_window_layers", 28)
        kinds = [
            "sliding_attention" if (i + 1) % 2 and i < first_global else "full_attention"
            for i in range(layers)
        ]
        f = Fields({**f.data, "layer_types": kinds}, f.where)
    return window_fields(f)


def _qwen2_moe(f: Fields) -> dict[str, Any]:
    """Qwen2-MoE (Qwen1.5-MoE): biases on q, k, v only; beside the routed experts one shared
    expert MLP of width shared_expert_intermediate_size, scaled by sigmoid(shared_expert_gate(x))
    (a Linear(d, 1) without bias); dense layers of width intermediate_size."""
    moe = _qwen_moe(f, 60, 4, 1408)
    if moe:
        moe.update(
            n_shared_experts=1,
            d_ff_shared=f.get("shared_expert_intermediate_size", 5632),
            shared_expert_gate=True,
        )
    return llama_like(
        f,
        kv_heads=16,
        **_LLAMA_NORM,
        **_qwen2_moe_window(f),
        qkv_bias=f.get("qkv_bias", True),
        out_bias=False,
        mlp_bias=False,
        **moe,
    )


def _qwen3_moe(f: Fields) -> dict[str, Any]:
    """Qwen3-MoE: Qwen2-MoE without the shared expert, with RMSNorms of q and k over head_dim,
    attention_bias on q, k, v and o, and head_dim hidden_size / heads unless the file states it
    (Qwen3-30B-A3B: 128). A window only with use_sliding_window, then on every layer."""
    window = window_fields(f) if f.get("use_sliding_window", False) else {}
    return llama_like(
        f,
        kv_heads=4,
        **_LLAMA_NORM,
        **window,
        qk_norm="head",
        mlp_bias=False,
        **_qwen_moe(f, 128, 8, 768),
    )


def _latent(f: Fields, v3: bool) -> dict[str, Any]:
    """Multi-head latent attention (DeepseekV2Attention, DeepseekV3Attention): the config's
    head_dim is qk_rope_head_dim there (its __post_init__ sets it), so the head is nope + rope.
    attention_bias is on q_a_proj, kv_a_proj_with_mqa and o_proj, never on q_proj."""
    heads = f.need("num_attention_heads")
    kv_heads = f.get("num_key_value_heads", heads)
    if kv_heads != heads:
        raise LLMCalcError(
            f"{f.where}: field 'num_key_value_heads' = {kv_heads}: latent attention decompresses "
            f"a key and a value for every head; allowed: num_attention_heads = {heads}"
        )
    q_lora = nullable(f, "q_lora_rank", 1536)
    bias = f.get("attention_bias", False)
    nope, rope = f.get("qk_nope_head_dim", 128), f.get("qk_rope_head_dim", 64)
    return {
        "n_kv_heads": None,
        "head_dim": nope + rope,
        "q_lora_rank": None if q_lora is None else f.get("q_lora_rank", None),
        "kv_lora_rank": f.get("kv_lora_rank", 512),
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope,
        "v_head_dim": f.get("v_head_dim", 128),
        "qkv_bias": bias,
        "out_bias": bias,
        "mlp_bias": False if v3 else f.get("mlp_bias", False),  # V3's MLPs have none
    }


def _deepseek_moe(f: Fields, v3: bool) -> dict[str, Any]:
    """Routed and shared experts from layer first_k_dense_replace on; the shared experts are one
    MLP of width moe_intermediate_size · n_shared_experts (d_ff_shared's default), ungated. V2:
    softmax over every expert, no renormalisation (norm_topk_prob is declared and never read);
    V3: sigmoid scores, the selection biased by e_score_correction_bias (a buffer), the top-k
    renormalised with norm_topk_prob. Both scale the weights by routed_scaling_factor."""
    layers = f.need("num_hidden_layers")
    first_dense = f.get("first_k_dense_replace", 0)
    names = ("n_routed_experts", "num_local_experts" if v3 else "num_experts")
    moe = _experts(f, names, 256 if v3 else 64, 8 if v3 else None)
    if first_dense >= layers:
        return {}
    scaling = f.get("routed_scaling_factor", 2.5 if v3 else 1.0)
    moe.update(
        n_shared_experts=f.get("n_shared_experts", 1 if v3 else 2),
        d_ff_expert=f.get("moe_intermediate_size", 2048 if v3 else 1407),
        router_score="sigmoid" if v3 else "softmax",
        normalize_topk=f.get("norm_topk_prob", True) if v3 else False,
        score_correction_bias=v3,
    )
    if first_dense:
        moe["first_dense_layers"] = first_dense
    if scaling != 1.0:
        moe["routed_scaling"] = scaling
    return moe


def _deepseek(f: Fields, v3: bool) -> dict[str, Any]:
    return llama_like(f, **_LLAMA_NORM, **_latent(f, v3), **_deepseek_moe(f, v3))


def _deepseek_v2(f: Fields) -> dict[str, Any]:
    """DeepSeek-V2 (and V2-Lite, q_lora_rank null: one q_proj)."""
    return _deepseek(f, v3=False)


def _deepseek_v3(f: Fields) -> dict[str, Any]:
    """DeepSeek-V3 (and R1), without its multi-token-prediction layer, as transformers builds it."""
    return _deepseek(f, v3=True)


def _gpt_oss(f: Fields) -> dict[str, Any]:
    """gpt-oss: every layer MoE; the router (with bias) takes the top-k logits, then a softmax
    over those k; the experts have biases on gate_up and down; attention has biases on q, k, v
    and o (attention_bias) and one learned sink logit per head; layer_types marks the layers
    behind the 128-token window (by default the even ones). The experts' clamped, interleaved
    SwiGLU has the same matmuls as a plain one."""
    bias = f.get("attention_bias", True)
    _listed_layers(f)
    return llama_like(
        f,
        kv_heads=8,
        head_dim=f.get("head_dim", 64),
        **window_fields(f, default_window=128, pattern=2),
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=False,
        attention_sinks=True,
        **_experts(f, ("num_local_experts", "num_experts"), 128, 4),
        router_score="topk_softmax",
        router_bias=True,
        expert_bias=True,
    )


def _llama4_window(f: Fields, layers: int) -> dict[str, Any]:
    """Chunked attention as a window of attention_chunk_size on the chunked layers (layer_types,
    by default the RoPE layers of no_rope_layers), the others (NoPE) global: transformers' cache
    keeps the last chunk − 1 tokens of a chunked layer, as llmcalc's window cache does."""
    kinds = f.data.get("layer_types")
    if kinds is None:
        interval = f.get("no_rope_layer_interval", 4)
        rope = _layer_list(f, "no_rope_layers", layers, (0, 1))
        if not rope:  # Llama4TextConfig: an empty list takes the default too
            rope = [int((i + 1) % interval != 0) for i in range(layers)]
        kinds = ["chunked_attention" if r else "full_attention" for r in rope]
    allowed = ("full_attention", "chunked_attention")
    if not (isinstance(kinds, list) and len(kinds) == layers and set(kinds) <= set(allowed)):
        raise LLMCalcError(
            f"{f.where}: field 'layer_types' = {quote(kinds)}: expected a list of {layers} "
            f"entries, each {' or '.join(repr(k) for k in allowed)}"
        )
    if "chunked_attention" not in kinds:
        return {}
    chunk = nullable(f, "attention_chunk_size", 8192)
    if chunk is None:
        raise LLMCalcError(
            f"{f.where}: field 'layer_types' names chunked layers but 'attention_chunk_size' "
            "is null"
        )
    print(
        f"Warning: {f.where}: field 'attention_chunk_size' = {chunk}: chunked attention is "
        "counted as a sliding window of that size (the KV cache is exact: chunk − 1 tokens per "
        "chunked layer, as transformers' cache); the chunk-block mask is not modelled",
        file=sys.stderr,
    )
    local = ["sliding_attention" if kind != "full_attention" else kind for kind in kinds]
    data = {**f.data, "layer_types": local, "sliding_window": f.get("attention_chunk_size", chunk)}
    return window_fields(Fields(data, f.where))


def _llama4_text(f: Fields) -> dict[str, Any]:
    """Llama 4 (text): MoE layers per moe_layers, else every interleave_moe_layer_step-th layer;
    each routed expert and the one shared expert of width intermediate_size, dense layers of
    width intermediate_size_mlp; the router takes the top-k logits, then a sigmoid of each.
    transformers' Llama4TextMoe runs every expert on every token (scores zero off the top-k):
    its FLOPs are n_experts / k times the routed ones llmcalc counts."""
    layers = _listed_layers(f)
    moe = _layer_list(f, "moe_layers", layers)
    if moe is None:
        step = f.get("interleave_moe_layer_step", 1)
        moe = list(range(step - 1, layers, step))
    moe = sorted(set(moe))
    experts = _experts(f, ("num_local_experts",), 16, 1)
    width = f.get("intermediate_size", 8192)
    fields = {}
    if moe:
        fields = {
            **experts,
            "d_ff_expert": width,
            "n_shared_experts": 1,  # d_ff_shared: 1 · d_ff_expert, intermediate_size
            "router_score": "topk_sigmoid",
            **_which_moe(layers, moe),
        }
    return llama_like(
        f,
        kv_heads=8,
        head_dim=f.get("head_dim", 128),
        **_LLAMA_NORM,
        **_llama4_window(f, layers),
        d_ff=f.get("intermediate_size_mlp", 16384),
        mlp_bias=False,
        **fields,
    )


def _llama4(f: Fields) -> dict[str, Any]:
    """Llama 4 with vision: the language model is its `text_config` (the vision tower and the
    projector are not counted; a warning says so). AutoModelForCausalLM builds the same."""
    return _llama4_text(language_model(f, "llama4", {"model_type": "llama4_text"}))


MOE_TYPES = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v2": _deepseek_v2,
    "deepseek_v3": _deepseek_v3,
    "gpt_oss": _gpt_oss,
    "llama4_text": _llama4_text,
    "llama4": _llama4,
}
# model_type -> the fields of UNMODELLED its mapping reads (hf.py: warn_unmodelled's `mapped`)
MOE_MAPPED = {
    **dict.fromkeys(MOE_TYPES, _EXPERT_FIELDS),
    "llama4_text": (*_EXPERT_FIELDS, "attention_chunk_size"),
}
# the types whose mapping reads sliding_window and layer_types (hf.py: WINDOWED)
MOE_WINDOWED = ("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "llama4_text")
