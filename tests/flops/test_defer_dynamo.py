"""Counting without importing torch._dynamo: same counts, nothing left behind, a safe fallback.

Each test runs in a fresh interpreter: the deferral only acts where torch._dynamo is not yet
imported, and this test process may have imported it already.
"""

import json
import subprocess
import sys
import textwrap


def run_fresh(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_counts_without_dynamo_equal_the_counts_with_it():
    out = run_fresh("""
        import dataclasses, json, sys
        import torch
        from llmcalc.config.schema import ModelConfig
        from llmcalc.flops.count import count_flops
        from llmcalc.config.presets import load_config
        from tests.conftest import tiny

        cfgs = [load_config("llama-3.2-1b"), ModelConfig.from_dict(tiny(n_kv_heads=2, bias=True))]
        deferred = [dataclasses.asdict(count_flops(cfg, 2, 16)) for cfg in cfgs]
        imported_while_counting = "torch._dynamo" in sys.modules or "_dynamo" in vars(torch)
        import torch._dynamo  # the real one, now: counting again runs with it
        real = [dataclasses.asdict(count_flops(cfg, 2, 16)) for cfg in cfgs]
        print(json.dumps({
            "imported_while_counting": imported_while_counting,
            "real_dynamo": hasattr(torch._dynamo, "reset"),
            "same": deferred == real,
            "fvcore_errors": [c["fvcore_error"] for c in deferred],
        }))
    """)
    assert out == {
        "imported_while_counting": False,
        "real_dynamo": True,
        "same": True,
        "fvcore_errors": [None, None],
    }


def test_the_deferral_leaves_no_stand_in_and_no_cached_exemption():
    out = run_fresh("""
        import json, sys
        import torch
        from llmcalc.flops.defer_dynamo import dynamo_import_deferred

        def add_one(x):
            return x + 1

        exempt = torch._disable_dynamo(add_one)  # as torch wraps its Python meta kernels
        with dynamo_import_deferred() as active:
            inside = exempt(1)
            cached_inside = getattr(add_one, "__dynamo_disable", None) is add_one
        after = {
            "active": active,
            "inside": inside,
            "cached_inside": cached_inside,
            "cached_after": hasattr(add_one, "__dynamo_disable"),
            "stand_in_after": "torch._dynamo" in sys.modules or "_dynamo" in vars(torch),
        }
        after["called_after"] = exempt(2)  # imports the real torch._dynamo and caches its wrapper
        after["real_wrapper"] = getattr(add_one, "__dynamo_disable") is not add_one
        after["real_dynamo"] = hasattr(sys.modules["torch._dynamo"], "reset")
        print(json.dumps(after))
    """)
    assert out == {
        "active": True,
        "inside": 2,
        "cached_inside": True,
        "cached_after": False,
        "stand_in_after": False,
        "called_after": 3,
        "real_wrapper": True,
        "real_dynamo": True,
    }


def test_work_that_needs_more_of_dynamo_is_rerun_with_the_real_one():
    out = run_fresh("""
        import json
        from llmcalc.flops.defer_dynamo import run_deferring_dynamo

        calls = []

        def needs_dynamo_config():
            calls.append(1)
            import torch._dynamo.config  # not in the stand-in: fails while deferred
            return hasattr(torch._dynamo.config, "cache_size_limit")

        flagged = run_deferring_dynamo(lambda: calls.append(1) or "ok", failed=lambda r: True)
        flagged_calls = len(calls)
        raised = run_deferring_dynamo(needs_dynamo_config)
        print(json.dumps({"flagged": [flagged, flagged_calls], "raised": [raised, len(calls)]}))
    """)
    # each: one deferred call (flagged as failed, or raising), then one with torch as it is
    assert out == {"flagged": ["ok", 2], "raised": [True, 4]}


def test_a_real_error_is_raised_once_when_dynamo_is_already_imported():
    out = run_fresh("""
        import json
        import torch._dynamo
        from llmcalc.flops.defer_dynamo import run_deferring_dynamo

        calls = []

        def broken():
            calls.append(1)
            raise ValueError("bad config")

        try:
            run_deferring_dynamo(broken)
            message = None
        except ValueError as exc:
            message = str(exc)
        print(json.dumps([message, len(calls)]))
    """)
    assert out == ["bad config", 1]
