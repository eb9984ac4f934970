"""New files, written whole or not at all, and never over an existing one (`init`, `add`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def create(path: Path, text: str) -> None:
    """Create `path` holding `text`; raises FileExistsError when the name is taken."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.link(tmp, path)  # unlike a rename, fails when the name exists
    finally:
        Path(tmp).unlink(missing_ok=True)
