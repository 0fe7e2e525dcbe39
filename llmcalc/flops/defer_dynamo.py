"""Run meta-device work without importing torch's compiler, torch._dynamo.

Why: many of torch's meta kernels (pointwise ops, embedding, norms, SDPA, cross-entropy) are Python
reference implementations wrapped in `torch._disable_dynamo` (torch/_compile.py). The first call
of such a wrapper runs `import torch._dynamo` only to exempt the kernel from dynamo's tracing, and
caches the exemption on the wrapped function as `__dynamo_disable`. With nothing being compiled
the exemption changes nothing, yet the import costs about as much as `import torch` itself; it is
most of the time `llmcalc flops` would spend counting.

While `dynamo_import_deferred()` is active, that import finds a stand-in whose `disable` returns
the function unchanged. On exit the stand-in is removed and every cached exemption is cleared, so
later code in the same process (a real torch.compile) finds torch as if this never ran. The deferral
is a no-op when torch._dynamo is already imported. Anything that needs more of torch._dynamo than
`disable` fails inside the deferral: callers rerun such work without it (`run_deferring_dynamo`).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_DYNAMO = "torch._dynamo"
_CACHE_ATTRIBUTE = "__dynamo_disable"  # set by torch._compile._disable_dynamo on first call

T = TypeVar("T")


@contextmanager
def dynamo_import_deferred() -> Iterator[bool]:
    """Yields True when the deferral is active, False when torch._dynamo was already imported."""
    import torch

    if _DYNAMO in sys.modules:
        yield False
        return
    exempted: list[Callable] = []

    def disable(fn: Callable, recursive: bool = True, wrapping: bool = True) -> Callable:
        exempted.append(fn)
        return fn

    stand_in = types.ModuleType(_DYNAMO, "llmcalc's stand-in while counting on the meta device")
    stand_in.disable = disable  # type: ignore[attr-defined]
    sys.modules[_DYNAMO] = stand_in
    torch._dynamo = stand_in  # type: ignore[attr-defined]
    try:
        yield True
    finally:
        if sys.modules.get(_DYNAMO) is stand_in:
            del sys.modules[_DYNAMO]
        if getattr(torch, "_dynamo", None) is stand_in:
            del torch._dynamo  # type: ignore[attr-defined]
        for fn in exempted:
            if getattr(fn, _CACHE_ATTRIBUTE, None) is fn:
                delattr(fn, _CACHE_ATTRIBUTE)


def run_deferring_dynamo(work: Callable[[], T], failed: Callable[[T], bool] = lambda _: False) -> T:
    """work() with torch._dynamo's import deferred; rerun with torch as it is when that raises or
    when failed(result) says the result may be the deferral's fault."""
    with dynamo_import_deferred() as deferred:
        try:
            result = work()
        except Exception:
            if not deferred:
                raise
        else:
            if not (deferred and failed(result)):
                return result
    return work()
