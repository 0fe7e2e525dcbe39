"""Speed of `llmcalc flops`, as ratios to a baseline measured in the same run.

Targets (issue: flops, item 9):
  wall(flops llama-3.1-405b --seq 8192) <= 2 x wall(python -c "import torch")
  wall(flops llama-3.1-405b --seq 8192) <= 1.2 x wall(flops llama-3.2-1b --seq 8192)  (flat in depth)
Also shown: the same command with --no-count (analytic only); the cost torch pays the first time a
Python meta kernel runs (its wrapper imports torch._dynamo); and the flops command in a process
that imported torch._dynamo first, which switches off llmcalc's deferral of that import
(llmcalc/flops/defer_dynamo.py): what counting would cost without it.

Run: python benchmarks/bench_flops.py [--repeat N]
"""

from _bench import PY, llmcalc, main

FIRST_META_OP = "import torch; torch.empty(4, device='meta').cos()"
WITH_DYNAMO = (
    "import sys, torch._dynamo; from llmcalc.cli import main; "
    "sys.argv = ['llmcalc', 'flops', 'llama-3.1-405b', '--seq', '8192']; main()"
)
COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "import torch + first meta op": [PY, "-c", FIRST_META_OP],
    "flops llama-3.1-405b --seq 8192": llmcalc("flops", "llama-3.1-405b", "--seq", "8192"),
    "flops llama-3.2-1b --seq 8192": llmcalc("flops", "llama-3.2-1b", "--seq", "8192"),
    "flops 405b --seq 8192 --no-count": llmcalc(
        "flops", "llama-3.1-405b", "--seq", "8192", "--no-count"
    ),
    "flops 405b, torch._dynamo imported": [PY, "-c", WITH_DYNAMO],
}
TARGETS = [
    ("405b flops / import torch", "flops llama-3.1-405b --seq 8192", "import torch", "wall", 2.0),
    (
        "405b / 1b (flat in depth)",
        "flops llama-3.1-405b --seq 8192",
        "flops llama-3.2-1b --seq 8192",
        "wall",
        1.2,
    ),
    (
        "405b --no-count / import torch",
        "flops 405b --seq 8192 --no-count",
        "import torch",
        "wall",
        2.0,
    ),
    ("first meta op / import torch", "import torch + first meta op", "import torch", "wall", 99),
    (
        "405b flops / same with torch._dynamo",
        "flops llama-3.1-405b --seq 8192",
        "flops 405b, torch._dynamo imported",
        "wall",
        1.0,
    ),
]

if __name__ == "__main__":
    main(COMMANDS, TARGETS, default_repeat=10)
