"""Float options refuse what is not a finite number, and JSON output is always valid JSON."""

import json

import pytest

from llmcalc.cli import app
from llmcalc.output import emit
from tests.conftest import assert_one_line_error

BUDGET = ["flops", "gpt2", "--no-count", "--json", "--tokens", "1T"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
@pytest.mark.parametrize("option", ["--mfu", "--peak-tflops"])
def test_float_options_refuse_non_finite_numbers(runner, option, value):
    assert_one_line_error(runner, [*BUDGET, option, value], f"{option} ")
    result = runner.invoke(app, [*BUDGET, option, value])
    assert "must be a finite number" in result.stderr


def test_finite_float_options_still_work(runner):
    result = runner.invoke(app, [*BUDGET, "--mfu", "0.5", "--peak-tflops", "989.5"])
    assert result.exit_code == 0, result.output
    budget = json.loads(result.stdout)["budget"]
    assert budget["mfu"] == 0.5 and budget["peak_flops_per_gpu"] == 989.5e12


def test_json_output_refuses_nan_rather_than_printing_invalid_json():
    assert emit("json", {"ok": 1.5}, []) == '{\n  "ok": 1.5\n}'
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not JSON compliant"):
            emit("json", {"x": bad}, [])
