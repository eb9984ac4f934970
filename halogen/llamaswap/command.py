"""llama-swap's command-line rules: `#` lines dropped, `\\` joins lines, POSIX shlex, no shell."""

from __future__ import annotations

import shlex


def strip_comments(cmd: str) -> str:
    return "\n".join(line for line in cmd.splitlines() if not line.lstrip().startswith("#"))


def split(cmd: str) -> list[str]:
    """The argv a command string runs as. Raises ValueError on unbalanced quotes."""
    text = strip_comments(cmd).replace("\\\n", " ")
    return shlex.split(text, comments=False, posix=True)
