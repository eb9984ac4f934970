"""A model's server dies with the proxy: each child asks Linux for SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG), so a `kill -9` of `halogen serve`, or a crash, leaves no llama-server
holding its port and its memory.

The request is made in the child between fork and exec (`preexec_fn`). Python warns that
`preexec_fn` may deadlock when other threads hold locks at the fork; the function below takes
none: the libc function is looked up once, here, and the child only calls it and `getppid`.
Linux sends the signal when the *thread* that forked exits: asyncio forks on the event loop's
thread, which lives as long as the proxy serves. Elsewhere (macOS) there is no such call and
children are spawned as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    function.restype = ctypes.c_int
    return function


_PRCTL = _prctl()


def supported() -> bool:
    return _PRCTL is not None


def preexec() -> Callable[[], None] | None:
    """What a child runs before exec so that it dies with this process; None where the platform
    cannot."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: no signal would come
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent
