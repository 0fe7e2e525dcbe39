"""llmcalc: exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model.

The Python API (README, "Python API"): `load_config`, `build_model`, and one function per
command: `analyze_params`, `analyze_flops`, `analyze_memory`, `compare_models`, `run_sweep`,
`run_parity` (`check --against transformers`); per GPU, `Layout`, `analyze_parallel` and `plan`.
Names are imported on first use, so `import llmcalc` stays free of torch until a model is built.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "ModelConfig": "llmcalc.config.schema",
    "load_config": "llmcalc.config.presets",
    "build_model": "llmcalc.model.transformer",
    "analyze_params": "llmcalc.params.analysis",
    "analyze_flops": "llmcalc.flops.analysis",
    "analyze_memory": "llmcalc.memory.analysis",
    "compare_models": "llmcalc.views.compare",
    "run_sweep": "llmcalc.views.sweep",
    "trace_training": "llmcalc.memory.trace",
    "run_parity": "llmcalc.views.parity",
    "Layout": "llmcalc.parallel.layout",
    "analyze_parallel": "llmcalc.parallel.analysis",
    "plan": "llmcalc.parallel.plan",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'llmcalc' has no attribute {name!r}")
