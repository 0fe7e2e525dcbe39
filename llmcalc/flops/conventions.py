"""Published FLOP conventions, each as its authors wrote it, set beside the exact count: 6N,
Kaplan's 2N + 2·L·T·d_attn, PaLM and torchtitan's 6N + 12·L·H·Q·T, Chinchilla's appendix F and
Korthikanti et al.'s 72·B·L·s·h². No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.params.formula import ParamFormula, param_formula


@dataclass(frozen=True)
class Convention:
    name: str
    flops: int  # training FLOPs of one step (batch × seq tokens) by this convention
    citation: str
    note: str = ""
    hardware: bool = False  # counts recomputation: compare with hardware FLOPs, not model FLOPs


def conventions(
    cfg: ModelConfig, batch: int, seq: int, recompute: str = "none"
) -> list[Convention]:
    params = param_formula(cfg)
    n_total = params.total.value
    n_non_embedding = params.non_embedding
    n_titan = torchtitan_matmul_params(cfg)
    tokens = batch * seq
    layers, d = cfg.n_layers, cfg.d_model
    d_attn = cfg.q_dim
    rows = [
        Convention(
            "6N (all parameters)",
            6 * n_total * tokens,
            "common rule of thumb",
            "N every expert: each token uses k of E" if cfg.n_experts else "",
        ),
        Convention(
            "6N (non-embedding)",
            6 * n_non_embedding * tokens,
            "Kaplan et al. 2020, section 2.1 (C ≈ 6N)",
        ),
        *_active_rows(cfg, params, tokens),
        Convention(
            "6N + 12·L·H·Q·T",
            (6 * n_titan + 12 * layers * cfg.n_heads * cfg.head_dim * seq) * tokens,
            "Chowdhery et al. 2022 (PaLM), appendix B; torchtitan, models/utils.py",
            ("N active (k of E experts), " if cfg.n_experts else "")
            + (
                "N all parameters: the tied table is the LM head's matmul"
                if cfg.tie_embeddings
                else "N without the embedding tables"
            ),
        ),
        Convention(
            "3 × (2N + 2·L·T·d_attn)",
            3 * (2 * n_non_embedding + 2 * layers * seq * d_attn) * tokens,
            "Kaplan et al. 2020, table 1 (forward), × 3 for training",
            "N non-embedding",
        ),
        Convention(
            "Chinchilla appendix F",
            3 * _chinchilla_forward(cfg, seq) * batch,
            "Hoffmann et al. 2022, appendix F (embeddings, softmax and logits counted)",
            "as published: MHA, 2-matrix MLP",
        ),
    ]
    applies = (
        cfg.n_kv_heads == cfg.n_heads and cfg.q_dim == d and not cfg.is_glu and cfg.d_ff == 4 * d
    )
    rows.append(
        Convention(
            "72·B·L·s·h²·(1 + s/6h + V/12hL)",
            korthikanti(batch, layers, seq, d, cfg.vocab_size),
            "Korthikanti et al. 2022, eq. 7 (no recomputation)",
            "" if applies else "assumes MHA and a 2-matrix MLP at 4h: not this model",
        )
    )
    if recompute == "full":
        rows.append(
            Convention(
                "96·B·L·s·h²·(1 + s/6h + V/16hL)",
                korthikanti(batch, layers, seq, d, cfg.vocab_size, recompute=True),
                "Korthikanti et al. 2022: eq. 7 plus a forward of every layer (logits not "
                "recomputed)",
                "hardware FLOPs" + ("" if applies else "; assumes MHA and a 2-matrix MLP at 4h"),
                hardware=True,
            )
        )
    return rows


def _active_rows(cfg: ModelConfig, params: ParamFormula, tokens: int) -> list[Convention]:
    """6·N_active for a model with experts: N the parameters one token uses (k of the E routed
    experts in each MoE layer), with the input embedding (as Mixtral, Qwen and Llama 4 publish
    it) and without it (DeepSeek-V3, gpt-oss)."""
    if not cfg.n_experts:
        return []
    cite = "Fedus et al. 2022 (Switch), DeepSeek-V3 report §4.2: 6 × activated parameters"
    return [
        Convention("6·N_active", 6 * params.active * tokens, cite, "N_active with the embedding"),
        Convention(
            "6·N_active (no input embedding)",
            6 * params.active_without_input_embedding * tokens,
            cite,
            "N_active without the input embedding table (a lookup)",
        ),
    ]


def torchtitan_matmul_params(cfg: ModelConfig) -> int:
    """N in torchtitan's 6N + 12·L·H·Q·T, as torchtitan/models/utils.py,
    get_dense_model_nparams_and_flops has it (since pytorch/torchtitan#3225, "Fix weight tying
    parameter accounting"; Llama3Model.Config.get_nparams_and_flops calls it):
        nparams = sum(p.numel() for p in model.parameters())  # unique: a tied table once
        nparams_embedding = the parameters of the model's nn.Embedding children
        nparams_for_matmul = nparams if enable_weight_tying else nparams - nparams_embedding
    Untied, the embedding tables (token, and a learned position table: both are nn.Embedding
    children here) are lookups and go; tied, nothing goes, since the one table is also the LM
    head's matmul weight (a learned position table then stays in N too, as that code has it)."""
    params = param_formula(cfg)  # with experts, torchtitan's MoE models count the active ones
    if cfg.tie_embeddings:
        return params.active
    embeddings = params.components["token_embedding"] + params.components["position_embedding"]
    return params.active - embeddings


def korthikanti(
    batch: int, layers: int, seq: int, hidden: int, vocab: int, recompute: bool = False
) -> int:
    """72·B·L·s·h²·(1 + s/(6h) + V/(12hL)) in integers: 72BLsh² + 12BLs²h + 6BshV. With every
    layer's forward recomputed (24BLsh² + 4BLs²h more): 96·B·L·s·h²·(1 + s/(6h) + V/(16hL))."""
    if recompute:
        per_layer = 96 * seq * hidden**2 + 16 * seq**2 * hidden
    else:
        per_layer = 72 * seq * hidden**2 + 12 * seq**2 * hidden
    return batch * (layers * per_layer + 6 * seq * hidden * vocab)


def _chinchilla_forward(cfg: ModelConfig, seq: int) -> int:
    """Forward FLOPs of one sequence, Hoffmann et al. 2022 appendix F, term by term."""
    d, kh, heads = cfg.d_model, cfg.q_dim, cfg.n_heads
    embeddings = 2 * seq * cfg.vocab_size * d
    attention = (
        2 * 3 * seq * d * kh  # key, query and value projections
        + 2 * seq * seq * kh  # key @ query logits
        + 3 * heads * seq * seq  # softmax
        + 2 * seq * seq * kh  # softmax @ value reductions
        + 2 * seq * kh * d  # final linear
    )
    dense = 2 * seq * (d * cfg.d_ff + d * cfg.d_ff)
    logits = 2 * seq * d * cfg.vocab_size
    return embeddings + cfg.n_layers * (attention + dense) + logits
