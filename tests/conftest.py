import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def tiny(**overrides):
    """A small valid config mapping for tests (the model builds and runs on CPU in milliseconds)."""
    base = dict(name="tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    base.update(overrides)
    return base
