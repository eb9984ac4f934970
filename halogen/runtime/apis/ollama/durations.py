"""Ollama's `keep_alive`: a number of seconds or a Go duration, read into seconds."""

from __future__ import annotations

import math
import re
from typing import Any

from halogen.runtime.base.errors import clip


class BadKeepAlive(ValueError):
    pass


# Go's time.ParseDuration, which Ollama reads `keep_alive` strings with: "0", or a sign and
# one or more decimal numbers, each with a unit ("1h30m", "-1s", "1.5h", "300ms").
_DURATION = re.compile(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
FOR_EVER = 1e9  # seconds (about 31 years): longer is for ever, and no expiry date overflows
_SECONDS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive(value: Any) -> float | None:
    """How long a model is to stay loaded after a request, as Ollama reads `keep_alive`: a
    number of seconds or a duration string ("5m", "1h30m", or plain seconds); negative = for ever (`math.inf`); absent or
    null = None (the config's ttl applies). `BadKeepAlive` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadKeepAlive(
            f"keep_alive must be a number of seconds or a duration like '5m', not {clip(value)}"
        )
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if match is not None:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(match.group(2)))
            value = -seconds if match.group(1) == "-" else seconds
        elif _SECONDS.fullmatch(text):  # "0", "-1", "300": seconds, as OLLAMA_KEEP_ALIVE reads them
            value = float(text)
        else:
            raise BadKeepAlive(
                f"keep_alive {clip(value)} is not a duration: write it like '30s', '5m' or '1h30m'"
            )
    if math.isnan(value) or value == math.inf:
        raise BadKeepAlive(f"keep_alive must be finite or negative, not {clip(value)}")
    return math.inf if value < 0 or value >= FOR_EVER else float(value)
