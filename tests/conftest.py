from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def tiny(**overrides):
    """A small valid config mapping for tests (the model builds and runs on CPU in milliseconds)."""
    base = dict(name="tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    base.update(overrides)
    return base


def readme_example(first_line: str) -> str:
    """The README's ```text block that starts with `first_line`."""
    text = README.read_text()
    start = text.index(f"```text\n{first_line}") + len("```text\n")
    return text[start : text.index("```", start)]


def as_printed(stdout: str) -> str:
    """Command output as pasted into the README: trailing spaces of each line removed."""
    return "\n".join(line.rstrip() for line in stdout.splitlines()) + "\n"
