"""`halogen smoke` run as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HALOGEN = Path(sys.executable).parent / "halogen"
# A bound on a whole run, never a measure of speed.
PATIENCE = 120.0


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HALOGEN_API_KEY"}
    env.update(extra)
    return env


async def smoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """`halogen smoke ARGS`, stdout and stderr as pipes; fails if it outlives PATIENCE."""
    process = await asyncio.create_subprocess_exec(
        str(HALOGEN),
        "smoke",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else environment(),
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), PATIENCE)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"halogen smoke {' '.join(args)} still ran after {PATIENCE} s") from None
    assert process.returncode is not None
    ran = Ran(process.returncode, out.decode(), err.decode())
    assert "Traceback" not in ran.both, ran.both
    return ran
