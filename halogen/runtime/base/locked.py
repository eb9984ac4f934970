"""What `halogen build` wrote into a model's llama-swap `metadata` from halogen.lock, read back
for the Ollama API: the header's keys, the file's size and the memory estimate. A hand-written
config without them reports what it did before."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from halogen.llamaswap.resolved import Runnable


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def model_info(model: Runnable) -> dict[str, Any]:
    """The GGUF header's general.* and <arch>.* keys, as Ollama's /api/show `model_info`."""
    info = model.metadata.get("modelInfo")
    if not isinstance(info, Mapping):
        return {}
    return {str(k): v for k, v in info.items() if isinstance(v, str | int | float | bool | list)}


def file_size(model: Runnable) -> int | None:
    return _count(model.metadata.get("fileSize"))


def memory(model: Runnable) -> int | None:
    """The estimate of what the model holds in memory when loaded, in bytes."""
    return _count(model.metadata.get("memory"))
