"""As PID 1 the proxy reaps orphaned zombies, but never the children asyncio waits for."""

from __future__ import annotations

import os
import shutil

from halogen.runtime.process import reaper

from .harness import process_exists, until
from .processes import state

TRUE = shutil.which("true") or "/bin/true"


def zombie_child() -> int:
    """A child of this process that has exited and that nothing has waited for."""
    pid = os.posix_spawn(TRUE, [TRUE], dict(os.environ))
    until(lambda: state(pid) == "Z", f"{pid} is a zombie", interval=0.01)
    return pid


def test_a_zombie_nobody_waits_for_is_reaped() -> None:
    pid = zombie_child()
    assert pid in reaper.stray_zombies()
    assert pid in reaper.reap_strays()
    assert not process_exists(pid)


def test_a_tracked_child_is_left_for_its_owner_to_reap() -> None:
    pid = zombie_child()
    reaper.track(pid)
    try:
        assert pid not in reaper.stray_zombies()
        assert pid not in reaper.reap_strays()
        assert os.waitpid(pid, 0)[0] == pid  # its exit status is still there for the owner
    finally:
        reaper.untrack(pid)
