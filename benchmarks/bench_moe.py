"""Speed of llmcalc on the largest mixture-of-experts preset, as ratios to a baseline measured in
the same run.

Targets (issue 13, item 11):
  wall(params deepseek-v3) <= 1.3 x wall(python -c "import torch")
  wall(flops deepseek-v3 --seq 4096) <= 2 x wall(python -c "import torch")
  wall(memory deepseek-v3 --trace --batch 1 --seq 2048) < 60 s (its own line, absolute)

Run: python benchmarks/bench_moe.py [--repeat N]
"""

import statistics
import sys

from _bench import PY, llmcalc, measure, run_once

COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "params deepseek-v3": llmcalc("params", "deepseek-v3"),
    "flops deepseek-v3 --seq 4096": llmcalc("flops", "deepseek-v3", "--seq", "4096"),
}
TARGETS = [
    ("params deepseek-v3 / import torch", "params deepseek-v3", "import torch", "wall", 1.3),
    (
        "flops deepseek-v3 --seq 4096 / import torch",
        "flops deepseek-v3 --seq 4096",
        "import torch",
        "wall",
        2.0,
    ),
]
TRACE = llmcalc("memory", "deepseek-v3", "--trace", "--batch", "1", "--seq", "2048")

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--trace-repeat", type=int, default=3)
    args = parser.parse_args()
    ok = measure(COMMANDS, TARGETS, args.repeat)
    walls = [run_once(TRACE)[0] for _ in range(args.trace_repeat)]
    wall = statistics.median(walls)
    print(
        f"{'memory deepseek-v3 --trace, 1 x 2048':<44} median {wall:6.1f} s  min "
        f"{min(walls):6.1f} s  (target < 60 s)  {'PASS' if wall < 60 else 'FAIL'}"
    )
    sys.exit(0 if ok and wall < 60 else 1)
