from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (full-size models counted op by op) run only with --slow."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def tiny(**overrides):
    """A small valid config mapping for tests (the model builds and runs on CPU in milliseconds)."""
    base = dict(name="tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    base.update(overrides)
    return base


def doc_example(first_line: str, lang: str = "text") -> str:
    """The ```text (or ```lang) block that starts with `first_line`, in README.md or a page of
    docs/: each example lives in one place, and a test keeps it the real output."""
    fence = f"```{lang}\n"
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        if fence + first_line in text:
            start = text.index(fence + first_line) + len(fence)
            return text[start : text.index("```", start)]
    raise AssertionError(f"no ```{lang} block starting with {first_line!r} in README.md or docs/")


def assert_one_line_error(runner, args, message):
    """Bad input: exit 2, nothing on stdout, one `Error:` line on stderr naming `message`."""
    from llmcalc.cli import app

    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def as_printed(stdout: str) -> str:
    """Command output as pasted into the docs: trailing spaces of each line removed."""
    return "\n".join(line.rstrip() for line in stdout.splitlines()) + "\n"


def decode_in_steps(model, cfg, tokens):
    """(full forward, the same logits from a prefill of 7 tokens, a chunk of 2, then one token
    at a time, the cache): the KV tests' incremental decoding, for 12 tokens."""
    import torch

    from llmcalc.model.attention import KVCache

    cache = KVCache(cfg, tokens.shape[0], tokens.shape[1], "cpu", torch.float32)
    with torch.no_grad():
        full = model(tokens)
        steps = [model(tokens[:, :7], cache=cache), model(tokens[:, 7:9], cache=cache)]
        steps += [model(tokens[:, i : i + 1], cache=cache) for i in range(9, tokens.shape[1])]
    return full, torch.cat(steps, dim=1), cache
