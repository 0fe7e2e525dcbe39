"""Speed and memory of `llmcalc params`, as ratios to a baseline measured in the same run.

Targets (issue: foundation, item 9):
  wall(params llama-3.1-405b) <= 1.3 x wall(python -c "import torch")
  peak RSS(params llama-3.1-405b) <= 1.3 x peak RSS(python -c "import torch")
  wall(params llama-3.1-405b) <= 1.2 x wall(params llama-3.2-1b)   (flat in depth: 126 vs 16 layers)

Run: python benchmarks/bench_params.py [--repeat N]
"""

from _bench import PY, llmcalc, main

COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "params llama-3.1-405b": llmcalc("params", "llama-3.1-405b"),
    "params llama-3.2-1b": llmcalc("params", "llama-3.2-1b"),
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
]

if __name__ == "__main__":
    main(COMMANDS, TARGETS, default_repeat=15)
