"""The README's Python API example runs as written, and `import llmcalc` does not import torch."""

import subprocess
import sys

from tests.conftest import doc_example


def test_readme_python_example_runs():
    code = doc_example("import llmcalc", lang="python")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "68976648192"  # the built module's parameter count


def test_import_llmcalc_and_load_a_config_without_torch():
    code = "import sys, llmcalc; llmcalc.load_config('gpt2'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
