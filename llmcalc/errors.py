"""The one exception users see: the CLI prints it as a single `Error: ...` line and exits 2."""


class LLMCalcError(Exception):
    """Bad input: a config field, a preset name, a file, an option. The message is the whole story."""

    exit_code = 2


class ResourceError(LLMCalcError):
    """A request this machine cannot serve (not enough memory, no CUDA)."""


class RunFailed(LLMCalcError):
    """A real run that started and failed (CUDA out of memory): exit code 1, not 2."""

    exit_code = 1


QUOTE_LIMIT = 80  # characters of a value an error message quotes


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A value as an error message shows it: its repr, at most `limit` characters, in time
    bounded by `limit` (a YAML alias bomb's nested lists are never expanded in full, a huge
    integer never converted to all its digits)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 240:  # up to 72 digits: the whole number
            return repr(value)
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 3, limit, limit, limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 4
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
