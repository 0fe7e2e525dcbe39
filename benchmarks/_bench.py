"""Shared runner: interleaved subprocess runs, medians and min, ratios with targets."""

import os
import statistics
import sys
import time


def run_once(argv):
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def measure(commands, targets, repeat):
    """Run `commands` (name -> argv) interleaved `repeat` times; print medians and target ratios.
    targets: (label, numerator, denominator, 'wall' | 'rss', limit). Returns True if all pass."""
    samples = {name: {"wall": [], "rss": []} for name in commands}
    for argv in commands.values():  # warm the file cache, not measured
        run_once(argv)
    for _ in range(repeat):
        for name, argv in commands.items():
            wall, rss = run_once(argv)
            samples[name]["wall"].append(wall)
            samples[name]["rss"].append(rss)
    medians = {
        name: {metric: statistics.median(values) for metric, values in s.items()}
        for name, s in samples.items()
    }
    print(f"{repeat} interleaved runs each, medians ({os.cpu_count()} CPUs)")
    print(f"{'command':<34}{'wall s':>9}{'min s':>9}{'peak RSS MiB':>15}")
    for name, m in medians.items():
        print(
            f"{name:<34}{m['wall']:>9.3f}{min(samples[name]['wall']):>9.3f}"
            f"{m['rss'] / 2**20:>15.1f}"
        )
    print()
    ok = True
    for label, num, den, metric, limit in targets:
        ratio = medians[num][metric] / medians[den][metric]
        best = min(samples[num][metric]) / min(samples[den][metric])  # noise only adds time
        ok &= ratio <= limit
        print(
            f"{label:<44} median {ratio:6.3f}x  min {best:6.3f}x  (target <= {limit}x, on the "
            f"median)  {'PASS' if ratio <= limit else 'FAIL'}"
        )
    return ok


PY = sys.executable


def llmcalc(*args):
    """argv that runs llmcalc with this interpreter."""
    return [PY, "-m", "llmcalc", *args]


def main(commands, targets, default_repeat):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=default_repeat)
    sys.exit(0 if measure(commands, targets, parser.parse_args().repeat) else 1)
