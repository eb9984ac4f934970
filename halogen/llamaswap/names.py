"""Comparing model names: the `:latest` fold (a name and the same name with `:latest` are one
name), and the nearest known name for a hint.

Ollama's clients name a model `name:tag`, and Ollama reads a name without a tag as `name:latest`
(types/model/name.go in ollama/ollama). halogen accepts `:latest` on every id and alias, lists
`a` as `a:latest` on the Ollama API, and so refuses two names that differ only by it. Every
place that compares names folds them here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

LATEST = ":latest"


def fold(name: str) -> str:
    """`name` without a trailing `:latest`."""
    return name.removesuffix(LATEST)


def spellings(name: str) -> tuple[str, str]:
    """What a request's `name` may mean, in the order to try: as sent, then folded."""
    return name, fold(name)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint naming the known name closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
