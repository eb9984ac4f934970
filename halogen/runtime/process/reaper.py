"""Zombie reaping for when the proxy is PID 1 (a container started without an init).

Orphans are re-parented to PID 1: a grandchild of a model that outlived its parent would stay a
zombie for ever, as nobody waits for it. The proxy reaps such strays itself, but never its own
children, whose exit status asyncio is waiting to collect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

INTERVAL = 1.0

# Children the proxy spawned and asyncio will reap.
_spawned: set[int] = set()


def track(pid: int) -> None:
    _spawned.add(pid)


def untrack(pid: int) -> None:
    _spawned.discard(pid)


def stray_zombies(parent: int | None = None) -> list[int]:
    """Zombie children of `parent` (this process by default) that nobody else waits for."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in _spawned:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if state == "Z" and int(ppid) == parent:
            found.append(int(entry.name))
    return found


def reap_strays() -> list[int]:
    reaped = []
    for pid in stray_zombies():
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    return reaped


async def reap_forever(interval: float = INTERVAL) -> None:
    while True:
        await asyncio.sleep(interval)
        reap_strays()
