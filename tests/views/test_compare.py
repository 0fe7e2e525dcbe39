"""`llmcalc compare`: each column is what the single-model commands report."""

import json

from llmcalc.cli import app


def _json(runner, *args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_compare_columns_equal_the_single_model_commands(runner):
    data = _json(runner, "compare", "llama-2-7b", "mistral-7b", "--seq", "2048", "--batch", "2")
    assert list(data["models"]) == ["llama-2-7b", "mistral-7b"]
    for name in ("llama-2-7b", "mistral-7b"):
        column = data["models"][name]
        params = _json(runner, "params", name)
        memory = _json(runner, "memory", name, "--seq", "2048", "--batch", "2")
        flops = _json(runner, "flops", name, "--seq", "2048", "--batch", "2", "--no-count")
        assert column["params"] == params["total"]
        assert column["non_embedding_params"] == params["non_embedding"]
        assert column["kv_cache_bytes"] == memory["kv_cache_bytes"]
        assert column["training_peak"] == memory["training"]["peak"]
        assert column["inference_peak"] == memory["inference"]["peak"]
        assert column["forward_flops_per_token"] == flops["forward"]["matmul"] // (2 * 2048)
    # GQA with 8 of 32 heads: a quarter of the MHA cache per token at equal sizes
    models = data["models"]
    assert (
        models["mistral-7b"]["kv_bytes_per_token"] * 4 == models["llama-2-7b"]["kv_bytes_per_token"]
    )


def test_compare_needs_two_models(runner):
    result = runner.invoke(app, ["compare", "gpt2"])
    assert result.exit_code == 2
    assert result.stderr == "Error: compare needs two or more models; got 1\n"


def test_compare_default_seq_is_the_shortest_context(runner):
    data = _json(runner, "compare", "gpt2", "llama-2-7b")
    assert data["seq"] == 1024
