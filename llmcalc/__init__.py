"""llmcalc: exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model."""

__version__ = "0.1.0"
