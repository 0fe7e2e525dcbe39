"""What a build can hold (model/limits.py): the commands that build tensors refuse, with the
reason and before torch is imported, what torch cannot represent or this machine cannot hold;
the closed-form commands answer with exact integers at the same sizes."""

import json
import subprocess
import sys
import time

import pytest

from llmcalc.cli import app
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import ResourceError, RunFailed
from llmcalc.model.limits import check_buildable, check_step, real_allocation
from tests.conftest import tiny


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (dict(vocab_size=2**63), "the token embedding would have vocab_size × d_model"),
        (dict(d_model=10**12, n_heads=1, d_ff=8), "the query projection would have"),
        (dict(d_ff=2**60), "the MLP would have d_model × d_ff"),
        (dict(position="learned", max_seq_len=2**60), "the position table would have"),
    ],
)
def test_weights_past_2_to_the_63_bytes_are_refused(changes, words):
    with pytest.raises(ResourceError, match=words) as error:
        check_buildable(ModelConfig.from_dict(tiny(**changes)))
    assert "2**63 bytes" in str(error.value) and "flops --no-count" in str(error.value)


def test_the_limit_is_in_bytes_of_the_build_dtype():
    cfg = ModelConfig.from_dict(tiny(vocab_size=2**57))  # 2**62 elements of d_model 32
    check_buildable(cfg, element_bytes=1)
    with pytest.raises(ResourceError):
        check_buildable(cfg, element_bytes=2)


def test_builds_past_4096_layers_are_refused():
    check_buildable(ModelConfig.from_dict(tiny(n_layers=4096)))
    with pytest.raises(ResourceError, match="n_layers = 4,097: llmcalc builds at most 4,096"):
        check_buildable(ModelConfig.from_dict(tiny(n_layers=4097)))


@pytest.mark.parametrize(
    ("batch", "seq", "words"),
    [
        (10**21, 1, "the token ids would have batch × seq"),
        (1, 2**31, "the attention scores would have batch × n_heads × seq × seq"),
        (2**40, 2**20, "the token ids"),
    ],
)
def test_steps_past_2_to_the_63_bytes_are_refused(batch, seq, words):
    with pytest.raises(ResourceError, match=words):
        check_step(ModelConfig.from_dict(tiny()), batch, seq)
    check_step(ModelConfig.from_dict(tiny()), 8, 2**20)


def test_the_build_itself_refuses(monkeypatch):
    from llmcalc.model.transformer import build_model

    with pytest.raises(ResourceError, match="token embedding"):
        build_model(ModelConfig.from_dict(tiny(vocab_size=2**62)))


def test_allocation_failures_become_run_failed_and_other_errors_pass():
    with pytest.raises(RunFailed, match="cpu: out of memory \\(DefaultCPUAllocator: can't alloc"):
        with real_allocation("cpu"):
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                "memory: you tried to allocate 8589934592 bytes. Error code 12"
            )
    with pytest.raises(RunFailed, match="out of memory \\(MemoryError\\)"):
        with real_allocation("cpu"):
            raise MemoryError
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with real_allocation("cpu"):
            raise RuntimeError("shape mismatch")
    assert RunFailed.exit_code == 1


def _error(runner, args):
    start = time.perf_counter()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == "", (args, result.output)
    lines = result.stderr.splitlines()  # a --seq past max_seq_len warns first
    assert [line for line in lines if line.startswith("Error: ")] == lines[-1:], lines
    assert all(line.startswith("Warning: ") for line in lines[:-1]), lines
    return lines[-1], time.perf_counter() - start


@pytest.mark.parametrize("command", [["params"], ["flops", "--full-trace"], ["memory", "--trace"]])
@pytest.mark.parametrize(
    "field", ["d_model=1000000000000", "vocab_size=9223372036854775808", "n_layers=1000000000"]
)
def test_builds_refuse_huge_sizes_before_importing_torch(runner, command, field):
    args = [command[0], "gpt2", *command[1:], "--set", field, "--set", "position=rope"]
    args += ["--set", "n_heads=1", "--set", "d_ff=64"] if field.startswith("d_model") else []
    message, seconds = _error(runner, args)
    assert "2**63 bytes" in message or "builds at most 4,096 layers" in message
    assert seconds < 2


def test_check_refuses_a_file_it_cannot_build(runner, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("vocab_size: 64\nd_model: 32\nn_heads: 4\nn_layers: 1000000000\n")
    message, seconds = _error(runner, ["check", str(path)])
    assert "n_layers = 1,000,000,000: llmcalc builds at most 4,096 layers" in message
    assert seconds < 2


def test_flops_counts_one_block_of_a_billion_layers(runner):
    result = runner.invoke(app, ["flops", "gpt2", "--set", "n_layers=1000000000", "--json"])
    assert result.exit_code == 0, result.output  # one block traced, × n_layers


def test_closed_forms_answer_at_the_same_sizes_exactly(runner):
    sets = ["--set", "vocab_size=9223372036854775808", "--set", "n_layers=1000000000"]
    memory = runner.invoke(app, ["memory", "gpt2", *sets, "--json"])
    assert memory.exit_code == 0, memory.output
    data = json.loads(memory.stdout)
    assert isinstance(data["training"]["peak"], int) and data["training"]["peak"] > 2**70
    flops = runner.invoke(app, ["flops", "gpt2", *sets, "--no-count", "--json"])
    assert flops.exit_code == 0, flops.output
    sweep = runner.invoke(app, ["sweep", "gpt2", "--vary", "n_layers=1000000000,12", "--json"])
    assert sweep.exit_code == 0, sweep.output


def test_a_step_torch_cannot_hold_is_refused_before_counting(runner):
    message, seconds = _error(runner, ["flops", "llama-3-8b", "--seq", str(10**12)])
    assert "the attention scores would have" in message and seconds < 2
    message, _ = _error(runner, ["flops", "gpt2", "--batch", str(10**21)])
    assert "the token ids would have batch × seq" in message
    assert (
        runner.invoke(app, ["flops", "gpt2", "--batch", str(10**21), "--no-count"]).exit_code == 0
    )


ALLOCATION_FAILS = """
import resource, sys
import llmcalc.config.hardware as hardware
hardware.free_in_words = lambda device: (1 << 60, "patched")  # let the build start
resource.setrlimit(resource.RLIMIT_AS, (3_500_000_000, resource.RLIM_INFINITY))
sys.argv = ["llmcalc", "params", "llama-3.2-1b", "--device", "cpu"]
from llmcalc.cli.app import main
main()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux applies it")
def test_an_allocation_that_fails_at_run_time_is_one_line_and_exit_1():
    run = subprocess.run([sys.executable, "-c", ALLOCATION_FAILS], capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == "", run.stderr[-2000:]
    assert run.stderr.startswith("Error: --device cpu: building the fp32 weights of llama-3.2-1b")
    assert "out of memory" in run.stderr and run.stderr.count("\n") == 1


UNDER_ULIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3_500_000_000, resource.RLIM_INFINITY))
sys.argv = ["llmcalc", "params", "llama-3.2-1b", "--device", "cpu"]
from llmcalc.cli.app import main
main()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux applies it")
def test_under_ulimit_v_the_refusal_names_the_address_space_limit():
    run = subprocess.run([sys.executable, "-c", UNDER_ULIMIT], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == "", run.stderr[-2000:]
    assert "is free (address-space limit)" in run.stderr and run.stderr.count("\n") == 1
