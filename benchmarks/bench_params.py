"""Speed and memory of `llmcalc params`, as ratios to a baseline measured in the same run.

Targets (issue: foundation, item 9):
  wall(params llama-3.1-405b) <= 1.3 x wall(python -c "import torch")
  peak RSS(params llama-3.1-405b) <= 1.3 x peak RSS(python -c "import torch")
  wall(params llama-3.1-405b) <= 1.2 x wall(params llama-3.2-1b)   (flat in depth: 126 vs 16 layers)

Commands run interleaved, REPEAT times each; the medians are compared. Peak RSS is the child's
ru_maxrss from wait4. Run: python benchmarks/bench_params.py [--repeat N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

PY = sys.executable
COMMANDS = {
    "import torch": [PY, "-c", "import torch"],
    "params llama-3.1-405b": [PY, "-m", "llmcalc", "params", "llama-3.1-405b"],
    "params llama-3.2-1b": [PY, "-m", "llmcalc", "params", "llama-3.2-1b"],
}
TARGETS = [
    # (what, numerator, denominator, metric, limit)
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


def run_once(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    samples = {name: {"wall": [], "rss": []} for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache, not measured
        run_once(argv)
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            wall, rss = run_once(argv)
            samples[name]["wall"].append(wall)
            samples[name]["rss"].append(rss)
    medians = {
        name: {metric: statistics.median(values) for metric, values in s.items()}
        for name, s in samples.items()
    }
    print(f"{args.repeat} interleaved runs each, medians ({os.cpu_count()} CPUs)")
    print(f"{'command':<26}{'wall s':>9}{'min s':>9}{'peak RSS MiB':>15}")
    for name, m in medians.items():
        print(
            f"{name:<26}{m['wall']:>9.3f}{min(samples[name]['wall']):>9.3f}"
            f"{m['rss'] / 2**20:>15.1f}"
        )
    print()
    failed = False
    for what, num, den, metric, limit in TARGETS:
        ratio = medians[num][metric] / medians[den][metric]
        best = min(samples[num][metric]) / min(samples[den][metric])  # noise only adds time
        ok = ratio <= limit
        failed |= not ok
        print(
            f"{what:<40} median {ratio:6.3f}x  min {best:6.3f}x  (target <= {limit}x, on the "
            f"median)  {'PASS' if ok else 'FAIL'}"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
