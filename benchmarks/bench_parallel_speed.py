"""Speed of the per-GPU commands (issue 14, item 7), as ratios to a baseline measured in the same
run, and the time of a fake-group trace.

Targets:
  wall(memory llama-3.1-405b --dp 64 --tp 8 --pp 16 --seq 8192)  <= 1.5 x wall(import torch)
  wall(plan llama-3.1-405b --gpus 1024 ...)                       <= 3 x wall(import torch)
  trace of llama-3-8b at world size 64 (dp 64, ZeRO-3, 1 x 4,096)  under 60 s

Run: python benchmarks/bench_parallel_speed.py [--repeat N]
"""

import sys
import time

from _bench import PY, llmcalc, measure

MEMORY = ["memory", "llama-3.1-405b", "--dp", "64", "--tp", "8", "--pp", "16", "--seq", "8192"]
PLAN = ["plan", "llama-3.1-405b", "--gpus", "1024", "--seq", "8192", "--global-batch", "16777216"]
COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "memory 405b dp64 tp8 pp16": llmcalc(*MEMORY),
    "plan 405b on 1024 GPUs": llmcalc(*PLAN),
}
TARGETS = [
    (
        "memory 405b dp64 tp8 pp16 / import torch",
        "memory 405b dp64 tp8 pp16",
        "import torch",
        "wall",
        1.5,
    ),
    (
        "plan 405b on 1024 GPUs / import torch",
        "plan 405b on 1024 GPUs",
        "import torch",
        "wall",
        3.0,
    ),
]


def trace_seconds() -> float:
    import warnings

    from llmcalc.config.presets import load_config
    from llmcalc.parallel.layout import Layout
    from llmcalc.parallel.trace import trace_parallel

    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    trace_parallel(load_config("llama-3-8b"), Layout(dp=64, zero=3), 1, 4096, "mixed")
    return time.perf_counter() - start


def main() -> int:
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 7
    ok = measure(COMMANDS, TARGETS, repeat)
    seconds = trace_seconds()
    print(
        f"{'trace llama-3-8b, world 64':<44} {seconds:6.1f} s (target < 60 s)  "
        f"{'PASS' if seconds < 60 else 'FAIL'}"
    )
    return 0 if ok and seconds < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
