"""Run py-rattler's coroutines (solve, index, install) from the tool's synchronous code."""

from __future__ import annotations

import asyncio
import atexit
import functools
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# rattler's tokio worker threads still hold a Python thread state for a moment after a result
# arrives. A process that finalizes in that moment crashes (SIGSEGV, or "PyGILState_Release:
# thread state must be current"): 14 of 20 CLI runs that exited right after indexing, 1 in 8
# after a solve. Waiting this long once, at exit, brought both to 0 in 30.
_EXIT_GRACE_SECONDS = 0.05


def run_rattler(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a rattler coroutine, with the process's exit made safe for it."""
    _wait_for_rattler_at_exit()
    return asyncio.run(coroutine)


@functools.cache
def _wait_for_rattler_at_exit() -> None:
    atexit.register(time.sleep, _EXIT_GRACE_SECONDS)
