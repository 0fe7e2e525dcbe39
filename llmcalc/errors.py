"""The one exception users see: the CLI prints it as a single `Error: ...` line and exits 2."""


class LLMCalcError(Exception):
    """Bad input: a config field, a preset name, a file, an option. The message is the whole story."""


class ResourceError(LLMCalcError):
    """A request this machine cannot serve (not enough memory, no CUDA)."""
