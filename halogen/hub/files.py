"""What the runtime needs to know of the files `halogen pull` places: whether a file is still the
one pull verified. Kept apart from the download and from the compiler's input models, so that
`halogen serve` imports neither (the parts of a split GGUF are in halogen/modelfiles.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def aside(final: Path, suffix: str) -> Path:
    return final.with_name(f".{final.name}{suffix}")


def marker_path(final: Path) -> Path:
    return aside(final, ".halogen-verified")


def verified(final: Path) -> str | None:
    """The sha256 the marker vouches for, when the file is still the one that was verified."""
    try:
        mark = json.loads(marker_path(final).read_text())
        st = final.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or mark.get("size") != st.st_size or mark.get("mtime_ns") != st.st_mtime_ns:
        return None
    sha = mark.get("sha256")
    return sha if isinstance(sha, str) and SHA256.match(sha) else None
