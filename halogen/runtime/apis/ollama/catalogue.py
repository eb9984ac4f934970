"""The Ollama catalogue of the config's models: `/api/version`, `/api/tags`, `/api/show`,
`/api/ps` answers, built from the config (and its lock) alone; pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from halogen.llamacpp import cmdline
from halogen.llamaswap.resolved import Runnable
from halogen.runtime.apis.ollama.answers import rfc3339
from halogen.runtime.base import locked

# A recent Ollama release: clients gate features on it (some want >= 0.6.4 for capabilities).
OLLAMA_VERSION = "0.12.6"

Json = dict[str, Any]

# Ollama answers "never expires" with a far-future time; its CLI shows that as "Forever".
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# Ollama's own default context, for a model whose config says nothing about its context.
DEFAULT_CONTEXT = 4096


def version() -> Json:
    return {"version": OLLAMA_VERSION}


@dataclass(frozen=True)
class RunningModel:
    runnable: Runnable
    size: int
    expires_at: datetime | None  # None = never (ttl 0)


def ollama_name(model_id: str) -> str:
    """Ollama lists `name:tag`; an id without a tag is listed as `id:latest`."""
    last = model_id.rsplit("/", 1)[-1]
    return model_id if ":" in last else f"{model_id}:latest"


def _digest(model: Runnable) -> str:
    # Stable while the command is; changes when the model or its flags do, as a real digest would.
    return hashlib.sha256("\0".join((model.id, *model.argv)).encode()).hexdigest()


def _text(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    return value.strip() if isinstance(value, str) else ""


def _family(model: Runnable) -> str:
    return _text(model.metadata, "family") or _text(model.metadata, "architecture")


def _architecture(model: Runnable) -> str:
    return _text(model.metadata, "architecture") or _family(model) or "unknown"


def _context_length(model: Runnable) -> int | None:
    value = model.metadata.get("contextLength")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if model.capabilities.context:
        return model.capabilities.context
    return _given_context(model)


def _details(model: Runnable) -> Json:
    family = _family(model)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": _text(model.metadata, "parameterSize"),
        "quantization_level": _text(model.metadata, "quantizationLevel"),
    }


def _capabilities(model: Runnable) -> list[str]:
    """Ollama's capabilities: `metadata.capabilities` when given, else `completion`, plus what
    llama-swap's `capabilities` block says that Ollama has a name for: `tools`, and image input
    as `vision`."""
    value = model.metadata.get("capabilities")
    out = [str(c) for c in value] if isinstance(value, list | tuple) and value else ["completion"]
    caps = model.capabilities
    if caps.tools and "tools" not in out:
        out.append("tools")
    if "image" in caps.in_ and "vision" not in out:
        out.append("vision")
    return out


def tags(
    models: Sequence[Runnable],
    sizes: Mapping[str, int],
    *,
    modified: Mapping[str, datetime] | None = None,
) -> Json:
    """`/api/tags`: listed models, sorted by id. `modified` maps ids to file times, if known."""
    modified = modified or {}
    return {
        "models": [
            {
                "name": ollama_name(m.id),
                "model": ollama_name(m.id),
                "modified_at": rfc3339(modified.get(m.id, UNKNOWN_TIME)),
                "size": int(sizes.get(m.id, 0)),
                "digest": _digest(m),
                "details": _details(m),
            }
            for m in sorted(models, key=lambda m: m.id)
            if not m.unlisted
        ]
    }


# What is known here of a peer's model: its name; its file and facts are the peer's.
_PEER_DETAILS: Json = {
    "parent_model": "",
    "format": "",
    "family": "",
    "families": None,
    "parameter_size": "",
    "quantization_level": "",
}


def peer_tag(name: str) -> Json:
    """An `/api/tags` entry for a peer's model (`<peer>/<model>`)."""
    return {
        "name": ollama_name(name),
        "model": ollama_name(name),
        "modified_at": rfc3339(UNKNOWN_TIME),
        "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": dict(_PEER_DETAILS),
    }


def peer_show(name: str, peer: str) -> Json:
    """`/api/show` for a peer's model (`name` as asked): enough for a client that shows a model
    before it chats with it (the `ollama` CLI's run does), a chat model with nothing known of
    its file."""
    return {
        "modelfile": f"# Served by peer {peer} through halogen: {name}\n",
        "details": dict(_PEER_DETAILS),
        "model_info": {},
        "capabilities": ["completion"],
        "modified_at": rfc3339(UNKNOWN_TIME),
    }


def show(model: Runnable, size: int, *, modified_at: datetime | None = None) -> Json:
    """`/api/show`: what clients read to learn a model's context, family and capabilities."""
    arch = _architecture(model)
    context = _context_length(model)
    info: Json = {"general.architecture": arch}
    if model.name:
        info["general.basename"] = model.name
    info[f"{arch}.context_length"] = context or DEFAULT_CONTEXT
    info = locked.model_info(model) or info  # the header's own keys, when the build had a lock
    gguf = cmdline.of_command(model.argv, model.env).model or model.id
    answer: Json = {
        "modelfile": f"# Served by halogen through llama-server: {model.id}\nFROM {gguf}\n",
        "details": _details(model),
        "model_info": info,
        "capabilities": _capabilities(model),
        "modified_at": rfc3339(modified_at or UNKNOWN_TIME),
    }
    loaded = _loaded_context(model)
    if loaded:
        answer["parameters"] = f"num_ctx {loaded}"
    return answer


def _loaded_context(model: Runnable) -> int | None:
    """The context the model is loaded with (Ollama's num_ctx): its -c, else the model's context."""
    return _given_context(model) or _context_length(model)


def _given_context(model: Runnable) -> int | None:
    """The command's -c, when it sets one (0 or less is "the model's own")."""
    size = cmdline.of_command(model.argv, model.env).ctx_size
    return size if size is not None and size > 0 else None


def ps(running: Sequence[RunningModel]) -> Json:
    """`/api/ps`: the running models, with when their TTL unloads them."""
    out = []
    for r in sorted(running, key=lambda r: r.runnable.id):
        model = r.runnable
        gpu_layers = cmdline.of_command(model.argv, model.env).get("--n-gpu-layers")
        entry: Json = {
            "name": ollama_name(model.id),
            "model": ollama_name(model.id),
            "size": locked.memory(model) or r.size,
            "digest": _digest(model),
            "details": _details(model),
            "expires_at": rfc3339(r.expires_at or NEVER),
            # With every layer on the CPU nothing is in VRAM; otherwise llama-server offloads.
            "size_vram": 0 if gpu_layers == "0" else locked.memory(model) or r.size,
        }
        # Ollama's ps gives the context the model was loaded with (num_ctx), not the trained one.
        context = _loaded_context(model)
        if context:
            entry["context_length"] = context
        out.append(entry)
    return {"models": out}
