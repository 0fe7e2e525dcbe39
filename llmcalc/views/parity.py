"""`llmcalc check --against transformers`: llmcalc's figures beside those of transformers' own
model, built from the same config.json (model_type and fields), one small check each.

    parameters       sum of numel over unique parameters (meta device) == llmcalc's count
    forward FLOPs    FlopCounterMode over one forward of transformers' model == llmcalc's
                     analytic matmul total (and llmcalc's own count), eager and SDPA
    KV cache         bytes of the cache a prefill returns (keys + values of every layer, windowed
                     layers included) == llmcalc's KV bytes, fp32 and bf16
    training peak    transformers' model traced on FakeTensorMode (forward with its own loss,
                     backward, AdamW step: the same tracer as `llmcalc memory --trace`) within
                     0.5 % of llmcalc's predicted peak, fp32 and mixed

transformers runs on fake tensors throughout (shapes, no storage: any size is free), except the
KV prefill with real=True (the tests: a real CPU run of a small config). transformers is imported
here only; `pip install 'llmcalc[parity]'` brings it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcalc.config.dtypes import DTYPE_BYTES
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.views.parity_notes import runs_every_expert

MEMORY_TOLERANCE = 0.005  # the training peak: within 0.5 %; everything else exact
KV_BATCH = 2
INSTALL = "pip install 'llmcalc[parity]'"


@dataclass(frozen=True)
class ParityCheck:
    name: str
    unit: str  # count, flops, bytes
    llmcalc: int
    transformers: int
    tolerance: float = 0.0  # relative; 0 = exact
    note: str = ""

    @property
    def difference(self) -> int:
        return self.transformers - self.llmcalc

    @property
    def relative(self) -> float:
        return self.difference / self.llmcalc if self.llmcalc else float(self.difference != 0)

    @property
    def passed(self) -> bool:
        return self.difference == 0 if self.tolerance == 0 else abs(self.relative) <= self.tolerance


@dataclass(frozen=True)
class ParityResult:
    config: str
    model_type: str
    transformers_version: str
    batch: int
    seq: int
    checks: list[ParityCheck]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def require_transformers() -> Any:
    """transformers, or the one error line that names the extra to install."""
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise LLMCalcError(
            f"--against transformers needs the transformers package: {INSTALL} (or the test extra)"
        ) from None


# --- transformers' model ----------------------------------------------------------------------


def hf_config(data: dict[str, Any]) -> Any:
    """transformers' config object from a config.json mapping (offline: nothing is fetched)."""
    transformers = require_transformers()
    if data.get("model_type") == "gemma3":  # llmcalc counts its language model, not the vision
        data = {**data.get("text_config", {}), "model_type": "gemma3_text"}
    fields = {k: v for k, v in data.items() if k != "model_type"}
    return transformers.AutoConfig.for_model(data["model_type"], **fields)


def build_hf_model(config: Any, attention: str, dtype: Any, experts: str | None = None) -> Any:
    """AutoModelForCausalLM from the config, in `dtype`, on the current device (or fake mode);
    `experts`: transformers 5's experts_implementation for mixture-of-experts types."""
    transformers = require_transformers()
    major = int(transformers.__version__.split(".")[0])
    kwargs = {"dtype" if major >= 5 else "torch_dtype": dtype}
    if experts is not None and major >= 5:
        kwargs["experts_implementation"] = experts
    try:
        return transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation=attention, **kwargs
        )
    except ValueError as exc:  # a type transformers runs eagerly only (GPT-J, BLOOM, Gemma 2)
        if attention != "sdpa" or "scaled_dot_product_attention" not in str(exc):
            raise
        return transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", **kwargs
        )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings about tiny vocabularies and the like are not ours to print."""
    transformers = require_transformers()
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(level)


@contextlib.contextmanager
def one_sequence_per_row() -> Iterator[None]:
    """On a real run transformers reads the position ids, finds one sequence per row (nothing
    packed) and lets SDPA apply its own causal mask; on fake tensors it cannot read them and
    would build a (B, 1, T, T) mask that a real run never makes. Tell it what a real run finds."""
    masking = importlib.import_module("transformers.masking_utils")
    original = getattr(masking, "find_packed_sequence_indices", None)
    if original is None:  # older transformers: no packed-sequence detection
        yield
        return
    masking.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


def _fake(device: str | None = None) -> contextlib.ExitStack:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    stack = contextlib.ExitStack()
    stack.enter_context(FakeTensorMode(allow_non_fake_inputs=device is not None))
    if device is not None:
        stack.enter_context(torch.device(device))
    stack.enter_context(one_sequence_per_row())
    return stack


# --- the checks -------------------------------------------------------------------------------


def check_params(config: Any, cfg: ModelConfig) -> ParityCheck:
    import torch

    from llmcalc.model.transformer import build_model
    from llmcalc.params.count import count_params
    from llmcalc.params.formula import param_formula

    with torch.device("meta"):
        model = build_hf_model(config, "sdpa", torch.float32)
    theirs = sum(p.numel() for p in model.parameters())  # unique: tied weights once
    counted = count_params(build_model(cfg)).total
    formula = param_formula(cfg).total.value
    note = "" if counted == formula else f"llmcalc's formula gives {formula:,}"
    return ParityCheck("parameters", "count", counted, theirs, note=note)


def check_forward_flops(
    config: Any, cfg: ModelConfig, attention: str, batch: int, seq: int
) -> ParityCheck:
    """transformers' forward on fake tensors on the meta device (SDPA there runs as its matmuls,
    as llmcalc's count does), under FlopCounterMode; against the analytic matmul total."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from llmcalc.flops.count import count_flops
    from llmcalc.flops.formula import forward_flops

    with _fake("meta"):
        # grouped experts as batched_mm: the default grouped_mm has no FlopCounterMode entry
        # and no fp32 meta kernel; batched_mm multiplies the routed rows only (a dense type
        # ignores it)
        model = build_hf_model(config, attention, torch.float32, experts="batched_mm")
        tokens = torch.zeros(batch, seq, dtype=torch.long)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(input_ids=tokens, use_cache=False)
    theirs = counter.get_total_flops()
    routed = forward_flops(cfg, batch, seq).matmul_total
    notes = []
    if runs_every_expert(config.to_dict()):  # compared as transformers computes: k = E
        cfg = cfg.replace(experts_per_token=cfg.n_experts)
        notes.append(
            f"transformers' Llama 4 runs every expert on every token: compared at "
            f"experts_per_token = n_experts = {cfg.n_experts}; with the k routed ones, "
            f"llmcalc's figure is {routed:,}"
        )
    formula = forward_flops(cfg, batch, seq).matmul_total
    counted = sum(count_flops(cfg, batch, seq).torch_forward.values())
    if counted != formula:
        notes.append(f"llmcalc counted {counted:,}")
    if theirs != formula:
        notes.append(
            f"transformers' forward computes matmuls llmcalc's model does not (or skips some): "
            f"FlopCounterMode's per-module table of both models shows where, batch {batch} × "
            f"seq {seq:,}"
        )
    name = f"FLOPs, {attention}"
    return ParityCheck(name, "flops", formula, theirs, note="; ".join(notes))


def _cache_tensors(cache: Any) -> list[Any]:
    """Keys and values of every layer (transformers 5: .layers[i].keys/.values; 4.x
    DynamicCache: .key_cache/.value_cache; older: tuples of (key, value))."""
    if hasattr(cache, "layers"):
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    elif hasattr(cache, "key_cache"):
        tensors = [*cache.key_cache, *cache.value_cache]
    else:
        tensors = [t for layer in cache for t in layer[:2]]
    return [t for t in tensors if t is not None]


def cache_bytes(cache: Any) -> int:
    """The cache's keys and values: numel × element size over every layer."""
    return sum(t.numel() * t.element_size() for t in _cache_tensors(cache))


def cache_storage_bytes(cache: Any) -> int:
    """The storage behind them, each once: more than cache_bytes where a layer keeps a view
    (transformers' sliding layers keep the last W - 1 tokens as a view of all the prefill's)."""
    storages = {id(t.untyped_storage()): t.untyped_storage() for t in _cache_tensors(cache)}
    return sum(storage.nbytes() for storage in storages.values())


def kv_seq(cfg: ModelConfig, seq: int) -> int:
    """A prefill past the sliding window, where there is one (so windowed layers are tested)."""
    window = cfg.sliding_window
    return seq if window is None else max(seq, window + 8)


def check_kv_cache(
    config: Any, cfg: ModelConfig, dtype: str, seq: int, real: bool = False
) -> ParityCheck:
    """A prefill of KV_BATCH sequences of kv_seq(seq) tokens with use_cache=True: the bytes of
    the cache it returns. real=True runs it on the CPU (small configs), else on fake tensors."""
    import torch

    from llmcalc.memory.formula import kv_cache_bytes

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    length = kv_seq(cfg, seq)
    with contextlib.nullcontext() if real else _fake():
        model = build_hf_model(config, "sdpa", torch_dtype).eval()
        tokens = torch.randint(0, cfg.vocab_size, (KV_BATCH, length))
        with torch.no_grad():
            out = model(input_ids=tokens, use_cache=True)
        theirs = cache_bytes(out.past_key_values)
        storage = cache_storage_bytes(out.past_key_values)
    ours = kv_cache_bytes(cfg, KV_BATCH, length, DTYPE_BYTES[dtype])
    how = "real CPU prefill" if real else "prefill on fake tensors"
    note = f"{how}, batch {KV_BATCH} × seq {length:,}"
    if storage != theirs:
        note += (
            f"; the storage behind the windowed layers' views is {storage:,} B (all the "
            "prefill's tokens, until the next step replaces it)"
        )
    return ParityCheck(f"KV cache, {dtype}", "bytes", ours, theirs, note=note)


def hf_loss(model: Any, tokens: Any, targets: Any) -> Any:
    """transformers' own loss: labels are the tokens (the model shifts them itself, and computes
    the cross-entropy in fp32 over every position, as llmcalc's model does). The step's
    `targets` stand for the labels tensor a collator makes (input_ids.clone()), held all step."""
    return model(input_ids=tokens, labels=tokens, use_cache=False).loss


def transformers_attention(cfg: ModelConfig, config: Any, implementation: str) -> str:
    """The attention transformers' model runs, as llmcalc's `--attention` names it: eager where
    the family has no SDPA path; SDPA's math path where torch falls back to it (parity_notes:
    takes_math_path); else the fused SDPA."""
    from llmcalc.views.parity_notes import takes_math_path

    if implementation == "eager":
        return "eager"
    return "math" if takes_math_path(config.to_dict(), cfg) else "sdpa"


def check_training_memory(
    config: Any, cfg: ModelConfig, precision: str, batch: int, seq: int, causes: list[str]
) -> ParityCheck:
    from llmcalc.memory.formula import training_memory
    from llmcalc.memory.trace import trace_module_training, trace_training
    from llmcalc.memory.train_step import precision_dtype

    ran = []  # the attention transformers runs: SDPA, or eager where the family has no SDPA

    def build() -> Any:
        model = build_hf_model(config, "sdpa", precision_dtype(precision)).train()
        ran.append(model.config._attn_implementation)
        return model

    with one_sequence_per_row():
        traced = trace_module_training(
            build, cfg.vocab_size, batch, seq, precision, "adamw", loss_fn=hf_loss
        )
    impl = transformers_attention(cfg, config, ran[0])  # predicted for the attention it runs
    predicted = training_memory(cfg, batch, seq, precision, "adamw", "none", impl)
    ours = trace_training(cfg, batch, seq, precision, "adamw", "none", impl).peak
    saved = traced.saved - predicted.activations
    notes = [
        f"training step (AdamW, {impl.upper() if impl == 'sdpa' else impl}), transformers' "
        f"peak in {traced.peak_phase} (llmcalc's: "
        f"{predicted.peak_phase}); llmcalc's own trace "
        f"{ours:,} ({traced.peak - ours:+,} B to transformers'); saved for backward "
        f"{saved:+,} B ({saved / max(predicted.activations, 1):+.2%})",
        *causes,
    ]
    return ParityCheck(
        f"peak, {precision}",
        "bytes",
        predicted.peak,
        traced.peak,
        tolerance=MEMORY_TOLERANCE,
        note="; ".join(notes),
    )


# --- all of them ------------------------------------------------------------------------------


def read_config_json(path: str) -> tuple[dict[str, Any], ModelConfig]:
    """The config.json mapping and llmcalc's config from it (a YAML preset is no transformers
    config: an error)."""
    from llmcalc.config.presets import is_hf_config, load_config

    where = Path(path).expanduser()
    if not is_hf_config(where):
        raise LLMCalcError(
            f"--against transformers: {path!r} is not a Hugging Face config.json "
            "(a preset has no transformers model to compare with)"
        )
    cfg = load_config(str(where))  # every error in the file, named
    file = where / "config.json" if where.is_dir() else where
    return json.loads(file.read_text(encoding="utf-8")), cfg


def run_parity(
    path: str, batch: int = 1, seq: int | None = None, real_kv: bool = False
) -> ParityResult:
    """Every check on one config.json, at (batch, seq) (default: min(max_seq_len, 2048))."""
    from llmcalc.views.parity_notes import memory_causes

    transformers = require_transformers()
    data, cfg = read_config_json(path)
    seq = min(cfg.max_seq_len, 2048) if seq is None else seq
    cfg.seq_warning("--seq", seq)  # past a learned position table: an error
    with quiet_transformers():
        try:
            config = hf_config(data)
        except (ValueError, KeyError) as exc:  # a model_type this transformers does not know
            raise LLMCalcError(
                f"{path}: transformers {transformers.__version__} cannot read model_type "
                f"{data['model_type']!r} ({exc})"
            ) from None
        resolved = config.to_dict()  # every field, transformers' defaults included
        checks = [check_params(config, cfg)]
        checks += [check_forward_flops(config, cfg, a, batch, seq) for a in ("eager", "sdpa")]
        checks += [check_kv_cache(config, cfg, d, seq, real_kv) for d in ("fp32", "bf16")]
        for precision in ("fp32", "mixed"):
            causes = memory_causes(resolved, cfg, precision, seq)
            checks.append(check_training_memory(config, cfg, precision, batch, seq, causes))
    return ParityResult(str(path), data["model_type"], transformers.__version__, batch, seq, checks)
