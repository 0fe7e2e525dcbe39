"""Speed and memory of `llmcalc params`, as ratios to a baseline measured in the same run.

Targets (issue: foundation, item 9):
  wall(params llama-3.1-405b) <= 1.3 x wall(python -c "import torch")
  peak RSS(params llama-3.1-405b) <= 1.3 x peak RSS(python -c "import torch")
  wall(params llama-3.1-405b) <= 1.2 x wall(params llama-3.2-1b)   (flat in depth: 126 vs 16 layers)
Issue 12: wall(params P) <= 1.3 x wall(python -c "import torch") for the presets it added (P =
qwen3-8b, phi-3-mini, olmo-1b) and for a config.json of a new type (pythia-160m re-saved by
transformers 5: rope_parameters).

Run: python benchmarks/bench_params.py [--repeat N]
"""

from _bench import PY, llmcalc, main

# issue 12's presets: params on each at most 1.3x import torch
NEW_PRESETS = ("qwen3-8b", "phi-3-mini", "olmo-1b", "gemma-2-9b", "gemma-3-4b", "mistral-7b-v0.1")
COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "params llama-3.1-405b": llmcalc("params", "llama-3.1-405b"),
    "params llama-3.2-1b": llmcalc("params", "llama-3.2-1b"),
    **{f"params {p}": llmcalc("params", p) for p in NEW_PRESETS},
    "params pythia-160m (v5 json)": llmcalc("params", "tests/data/hf/pythia-160m-v5"),
}
TARGETS = [
    ("405b wall / import torch", "params llama-3.1-405b", "import torch", "wall", 1.3),
    ("405b peak RSS / import torch", "params llama-3.1-405b", "import torch", "rss", 1.3),
    (
        "405b wall / 1b wall (flat in depth)",
        "params llama-3.1-405b",
        "params llama-3.2-1b",
        "wall",
        1.2,
    ),
    *[
        (f"{p} wall / import torch", f"params {p}", "import torch", "wall", 1.3)
        for p in (*NEW_PRESETS, "pythia-160m (v5 json)")
    ],
]

if __name__ == "__main__":
    main(COMMANDS, TARGETS, default_repeat=15)
