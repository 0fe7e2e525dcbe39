"""The one configurable decoder-only Transformer that every llmcalc figure is counted from.

The model reads top to bottom: layers.py (linears that skip init on meta, norms, position
tables), attention.py (the KV cache and attention), latent_attention.py (DeepSeek's MLA), mlp.py
(the dense MLP and its activations), experts.py (mixture of experts: router, routed and shared
experts), and this file: the block (where norm_position and the serial/parallel layout live), the
full model and `build_model`.
Each config field maps to one branch; to add a variant: a field in config/schema.py, a branch
here, a term in each formula it touches, a test (docs/architecture.md).

Parameter names are part of the output (the per-tensor table) and are mapped to components in
params/count.py: tok_embeddings, pos_embeddings, layers.N.{attn,mlp}.* (an MoE layer's
mlp.router, mlp.experts, mlp.shared_experts), layers.N.*_norm,
final_norm, lm_head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmcalc.config.experts import is_latent, is_moe_layer
from llmcalc.config.schema import ModelConfig
from llmcalc.model.attention import Attention, KVCache
from llmcalc.model.experts import MoE
from llmcalc.model.latent_attention import LatentAttention
from llmcalc.model.layers import Embedding, Linear, maybe_norm, rope_tables, sinusoidal_table
from llmcalc.model.limits import check_buildable
from llmcalc.model.mlp import MLP

# --- the block: norm_position x block layout -------------------------------------------------


class Block(nn.Module):
    """One layer. Where its norms sit (f = attention or MLP):
        pre       x + f(norm(x))           input norms
        post      norm(x + f(x))           a norm after the residual add
        sandwich  x + norm(f(norm(x)))     input and output norms
        output    x + norm(f(x))           output norms
    serial runs attention then MLP; parallel adds both to the same x, each branch with its own
    norms, except the post norm, of which there is one over x + attn + mlp;
    parallel_shared_norm has one norm wherever parallel has two (the output norm is then applied
    to attn + mlp). A residual_multiplier scales what joins the residual stream: each branch in
    a serial block, the sum of both in a parallel one (Granite)."""

    def __init__(self, cfg: ModelConfig, layer: int = 0, attention: str = "sdpa") -> None:
        super().__init__()
        self.parallel = cfg.block != "serial"
        self.shared_norm = shared = cfg.block == "parallel_shared_norm"
        position = cfg.norm_position
        has_input = position in ("pre", "sandwich")
        has_output = position in ("sandwich", "output")

        self.attn_norm = maybe_norm(cfg, has_input)
        latent = is_latent(cfg)
        self.attn = (LatentAttention if latent else Attention)(cfg, layer, attention)
        self.attn_out_norm = maybe_norm(cfg, has_output)
        self.mlp_norm = self.attn_norm if shared else maybe_norm(cfg, has_input)
        self.mlp = MoE(cfg) if is_moe_layer(cfg, layer) else MLP(cfg)
        self.mlp_out_norm = maybe_norm(cfg, has_output and not shared)
        self.residual_multiplier = cfg.residual_multiplier
        if self.parallel:
            self.post_norm = maybe_norm(cfg, position == "post")
        else:
            self.attn_post_norm = maybe_norm(cfg, position == "post")
            self.mlp_post_norm = maybe_norm(cfg, position == "post")

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if not self.parallel:  # no branch output outlives its add (a local would hold it)
            h = self.attn_post_norm(
                x + self._scaled(self.attn_out_norm(self.attn(self.attn_norm(x), cache, rope)))
            )
            return self.mlp_post_norm(
                h + self._scaled(self.mlp_out_norm(self.mlp(self.mlp_norm(h))))
            )
        attn_in = self.attn_norm(x)
        attn_out = self.attn(attn_in, cache, rope)
        mlp_out = self.mlp(attn_in if self.shared_norm else self.mlp_norm(x))
        if self.shared_norm:  # one output norm (if any) over the sum of both branches
            branches = self.attn_out_norm(attn_out + mlp_out)
        else:
            branches = self.attn_out_norm(attn_out) + self.mlp_out_norm(mlp_out)
        return self.post_norm(x + self._scaled(branches))

    def _scaled(self, branch: torch.Tensor) -> torch.Tensor:
        m = self.residual_multiplier
        return branch if m is None else branch * m


# --- the model -------------------------------------------------------------------------------


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.position == "learned":  # position_offset extra rows come first (OPT: 2)
            self.pos_embeddings = Embedding(cfg.max_seq_len + cfg.position_offset, cfg.d_model)
        self.embedding_norm = maybe_norm(cfg, cfg.embedding_norm)  # BLOOM
        self.layers = nn.ModuleList(Block(cfg, i, attention) for i in range(cfg.n_layers))
        self.final_norm = maybe_norm(cfg, cfg.final_norm)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=cfg.lm_head_bias)
        if cfg.tie_embeddings:  # one tensor, counted once (named_parameters de-duplicates)
            self.lm_head.weight = self.tok_embeddings.weight
        # Full activation checkpointing: each block keeps only its input for the backward pass
        # and runs its forward again there (torch.utils.checkpoint, non-reentrant).
        self.checkpointing = False
        self.chunk = 0  # context parallelism: which chunk of the sequence this rank holds

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab), or the mean cross-entropy loss when targets are given. With a
        cache, the tokens continue the sequences it holds (prefill when it is empty, then one
        token per decode step) and their keys and values are added to it."""
        seq = tokens.shape[1]
        start = cache.length if cache is not None else self.chunk * seq
        cfg = self.cfg
        x = self.tok_embeddings(tokens)
        if cfg.scale_embeddings:  # Gemma: × sqrt(d_model), rounded to the dtype as in HF
            x = x * torch.tensor(cfg.d_model**0.5, dtype=x.dtype, device=x.device)
        if cfg.embedding_multiplier is not None:
            x = x * cfg.embedding_multiplier
        if cfg.position == "learned":
            first = start + cfg.position_offset
            x = x + self.pos_embeddings(torch.arange(first, first + seq, device=tokens.device))
        elif cfg.position == "sinusoidal":
            table = sinusoidal_table(start + seq, cfg.d_model, x.device)
            x = x + table[start:].to(x.dtype)
        x = self.embedding_norm(x)
        rope = None
        if self.cfg.position == "rope":  # once per forward, shared by every layer
            rope = rope_tables(self.cfg, start, seq, x.device, x.dtype)
        for layer in self.layers:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, cache, rope, use_reentrant=False)
            else:
                x = layer(x, cache, rope)
        if cache is not None:
            cache.length += seq
        logits = self.lm_head(self.final_norm(x))
        if cfg.logit_softcap is not None:  # Gemma 2: c·tanh(logits / c)
            logits = torch.tanh(logits / cfg.logit_softcap) * cfg.logit_softcap
        if cfg.logit_scale is not None:
            logits = logits * cfg.logit_scale
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def build_model(
    cfg: ModelConfig,
    device: str = "meta",
    dtype: torch.dtype = torch.float32,
    attention: str = "sdpa",
) -> Transformer:
    """The model on `device`. On meta, tensors have shapes and no storage: any size is free, and
    PyTorch's init functions are no-ops there. A model torch cannot represent, or whose module
    graph this machine cannot hold, is refused first (limits.py); callers that build on a real
    device check that the weights fit (params/analysis.py: check_weights_fit)."""
    check_buildable(cfg, dtype.itemsize)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: no fp32 copy first, and works on fakes
    try:
        with torch.device(device):
            return Transformer(cfg, attention)
    finally:
        torch.set_default_dtype(previous)
