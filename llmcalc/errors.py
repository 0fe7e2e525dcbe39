"""The one exception users see: the CLI prints it as a single `Error: ...` line and exits 2."""


class LLMCalcError(Exception):
    """Bad input: a config field, a preset name, a file, an option. The message is the whole story."""

    exit_code = 2


class ResourceError(LLMCalcError):
    """A request this machine cannot serve (not enough memory, no CUDA)."""


class RunFailed(LLMCalcError):
    """A real run that started and failed (CUDA out of memory): exit code 1, not 2."""

    exit_code = 1
