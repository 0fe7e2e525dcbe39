"""Speed of `llmcalc memory`, as ratios to a baseline measured in the same run.

Targets (issue 4, item 9):
  wall(memory llama-3.1-405b --seq 8192)  <= 1.5 x wall(python -c "import torch")   (formula + KV)
  wall(memory llama-3.1-405b --batch 1 --seq 2048 --trace) < 60 s on this 2-core machine

Run: python benchmarks/bench_memory.py [--repeat N]
"""

import sys
import time

from _bench import PY, llmcalc, measure, run_once

COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "memory llama-3.1-405b --seq 8192": llmcalc("memory", "llama-3.1-405b", "--seq", "8192"),
}
TARGETS = [
    ("memory 405b / import torch", "memory llama-3.1-405b --seq 8192", "import torch", "wall", 1.5),
]
TRACED = llmcalc("memory", "llama-3.1-405b", "--batch", "1", "--seq", "2048", "--trace")


def main():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    ok = measure(COMMANDS, TARGETS, parser.parse_args().repeat)
    walls = [run_once(TRACED)[0] for _ in range(3)]
    best, worst = min(walls), max(walls)
    traced_ok = worst < 60
    print(
        f"{'traced 405b b1 s2048 (3 runs)':<44} min {best:6.2f} s  max {worst:6.2f} s  "
        f"(target < 60 s)  {'PASS' if traced_ok else 'FAIL'}"
    )
    return 0 if ok and traced_ok else 1


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
    sys.exit(status)
