"""Read what a GGUF file states, with the `gguf` package (llama.cpp's own reader, gguf-py).

Imported only by `halogen lock`: neither the compiler nor the image needs the `gguf` package,
because the facts travel in `halogen.lock` and then in out/config.yaml.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from halogen.lock import GgufFacts, InfoValue

CHUNK = 8 * 1024 * 1024
MAX_INFO_ARRAY = 1024  # per-layer arrays are kept; vocabularies are not
MAX_INFO_STRING = 1024  # names and licenses are kept; a long description or template is not

# The sliding-window pattern llama.cpp assumes when the header gives none: the `n_pattern` (and
# dense_first) each architecture passes to `load_swa_pattern` in src/models/<arch>.cpp, applied by
# `llama_hparams::set_swa_pattern` (src/llama-hparams.cpp). llama.cpp 0.3.36's vendored tree.
SWA_PATTERN: dict[str, tuple[int, bool]] = {
    "afmoe": (4, False),
    "cohere2": (4, False),
    "cohere2moe": (4, True),
    "exaone-moe": (4, False),
    "exaone4": (4, False),
    "gemma-embedding": (6, False),
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "laguna": (4, True),
    "llama4": (4, False),
    "mellum": (4, False),
    "modern-bert": (3, True),
    "muse-glimmer": (4, False),
    "olmo2": (4, False),
    "gpt-oss": (2, False),  # models/openai-moe.cpp
    "plamo3": (8, False),
    "smallthinker": (4, True),
}


def swa_layers(n_layer: int, n_pattern: int, dense_first: bool) -> list[int]:
    """`llama_hparams::set_swa_pattern`: which layers use the sliding window."""
    if dense_first:
        return [il for il in range(n_layer) if n_pattern == 0 or il % n_pattern != 0]
    return [il for il in range(n_layer) if n_pattern == 0 or il % n_pattern < n_pattern - 1]


def digest(path: Path, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Size and sha256 of a file, streamed (model files are tens of GB)."""
    sha = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb") as fh:
        while n := fh.readinto(buffer):
            sha.update(view[:n])
            size += n
            if progress:
                progress(n)
    return size, sha.hexdigest()


def _value(field: gguf.ReaderField) -> Any:
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        inner = field.types[-1]
        if inner == gguf.GGUFValueType.STRING or len(field.data) > MAX_INFO_ARRAY:
            return None
        return [_scalar(field.parts[i][0], inner) for i in field.data]
    if kind == gguf.GGUFValueType.STRING:
        text = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        return text if len(text) <= MAX_INFO_STRING else None
    return _scalar(field.parts[field.data[0]][0], kind)


def _scalar(raw: Any, kind: gguf.GGUFValueType) -> InfoValue:
    if kind == gguf.GGUFValueType.BOOL:
        return bool(raw)
    if kind in (gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
        # The shortest text that reads back as the stored float32 (1e-05, not 9.99999974e-06).
        return float(str(np.float32(raw))) if kind == gguf.GGUFValueType.FLOAT32 else float(raw)
    return int(raw)


def _file_type(fields: dict[str, Any], reader: gguf.GGUFReader) -> str:
    code = fields.get("general.file_type")
    if isinstance(code, int):
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (or an unknown) file type: the type holding most of the weights.
    weight = Counter[str]()
    for tensor in reader.tensors:
        weight[tensor.tensor_type.name] += int(tensor.n_bytes)
    return weight.most_common(1)[0][0] if weight else "unknown"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _int_or_list(value: Any) -> int | list[int]:
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value] if len(set(value)) > 1 else (int(value[0]) if value else 0)
    return _int(value)


def read_facts(path: Path) -> GgufFacts:
    """The facts of one GGUF file's header; raises ValueError when it is not a GGUF file."""
    reader = gguf.GGUFReader(path, "r")
    fields: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "tokenizer.chat_template":
            continue
        value = _value(field)
        if value is not None:
            fields[key] = value
    arch = fields.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ValueError("the header has no general.architecture")

    def a(key: str) -> Any:
        return fields.get(f"{arch}.{key}")

    parameters = sum(int(t.n_elements) for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    n_layer = _int(a("block_count"))
    n_embd = _int(a("embedding_length"))
    n_head = _int_or_list(a("attention.head_count"))
    n_head_kv = (
        _int_or_list(a("attention.head_count_kv")) if a("attention.head_count_kv") is not None else n_head
    )
    first_head = n_head[0] if isinstance(n_head, list) and n_head else n_head
    head_dim = n_embd // first_head if isinstance(first_head, int) and first_head else 0
    window = _int(a("attention.sliding_window"))
    layers: list[int] = []
    if window:
        pattern = a("attention.sliding_window_pattern")
        if isinstance(pattern, list):
            layers = [i for i, swa in enumerate(pattern[:n_layer]) if swa]
        elif arch in SWA_PATTERN:
            n_pattern, dense_first = SWA_PATTERN[arch]
            layers = swa_layers(n_layer, _int(pattern, n_pattern), dense_first)
    vocab = _int(a("vocab_size"))
    if not vocab and "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    info: dict[str, InfoValue] = {
        k: v for k, v in fields.items() if k.startswith(("general.", f"{arch}.", "tokenizer.ggml."))
    }
    # Ollama reports general.parameter_count, counted from the tensors when the file has none.
    info.setdefault("general.parameter_count", parameters)
    return GgufFacts(
        architecture=arch,
        name=str(fields.get("general.name", "")),
        fileType=_file_type(fields, reader),
        parameterCount=parameters,
        tensorBytes=tensor_bytes,
        contextLength=_int(a("context_length")),
        blockCount=n_layer,
        embeddingLength=n_embd,
        feedForwardLength=_int_or_list(a("feed_forward_length")),
        vocabSize=vocab,
        headCount=n_head,
        headCountKv=n_head_kv,
        keyLength=_int(a("attention.key_length"), head_dim),
        valueLength=_int(a("attention.value_length"), head_dim),
        kvLoraRank=_int(a("attention.kv_lora_rank")),
        ropeDimensionCount=_int(a("rope.dimension_count")),
        slidingWindow=window,
        slidingWindowLayers=layers,
        expertCount=_int(a("expert_count")),
        expertUsedCount=_int(a("expert_used_count")),
        expertFeedForwardLength=_int(a("expert_feed_forward_length")),
        info=info,
    )
