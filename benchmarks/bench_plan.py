"""Speed of `llmcalc plan`, as a ratio to a baseline measured in the same run.

Target (issue 14, item 7):
  wall(plan llama-3.1-405b --gpus 1024 --seq 8192 --global-batch 16777216)
      <= 3 x wall(python -c "import torch")

Both run as fresh processes, interleaved, median of --repeat runs each (default 7). Also prints
what the search examined (its --json "search" block).

Run: python benchmarks/bench_plan.py [--repeat N]
"""

import json
import subprocess
import sys
import time

from _bench import PY, llmcalc, measure

PLAN = ["plan", "llama-3.1-405b", "--gpus", "1024", "--seq", "8192", "--global-batch", "16777216"]
NAME = "plan llama-3.1-405b --gpus 1024"
COMMANDS = {"import torch": [PY, "-c", "import torch"], NAME: llmcalc(*PLAN)}
TARGETS = [("plan 405b on 1024 GPUs / import torch", NAME, "import torch", "wall", 3.0)]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    ok = measure(COMMANDS, TARGETS, parser.parse_args().repeat)
    out = subprocess.run(llmcalc(*PLAN, "--json"), capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    best = data["best"][0]
    print(
        f"search: {data['search']}; best: {best['describe']}, micro-batch {best['micro_batch']}"
        f" × {best['microbatches']}, recompute {best['checkpointing']},"
        f" step {best['time_s']['step']:.2f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
    sys.exit(status)
