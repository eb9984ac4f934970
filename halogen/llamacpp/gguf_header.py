"""Read what a GGUF file's header states, in bounded time and memory, whatever the file holds.

Imported only by `halogen lock`: neither the compiler nor the image needs the `gguf` package,
because the facts travel in `halogen.lock` and then in out/config.yaml. The package gives the
tables (quantization block sizes, file type names); the bytes are read here, as a stream, because
gguf-py's GGUFReader builds an object for every element of every array before anyone can look at
a count (a 251-byte file claiming 2^40 elements ran it out of memory).

The layout is llama.cpp's (ggml/include/gguf.h; the checks follow `gguf_init_from_reader` in
ggml/src/gguf.cpp, llama.cpp 067d44f6c484; gguf-py/gguf/gguf_reader.py reads the same bytes):

    "GGUF" | version u32 | tensor count u64 | key/value count u64
    key/value:   key (u64 length, bytes) | type u32 | value
                 an array value: item type u32 | count u64 | items (no arrays of arrays)
    tensor info: name (u64 length, bytes) | dims u32 | one u64 per dim | ggml type u32 | offset u64

Every count and length is checked against a bound below, and against the bytes left in the file,
before anything is read for it. Values halogen does not keep (vocabularies, merges, long strings)
are stepped over without being built. The tensor data is never read: a file cut after its header
(a range read of its first bytes) gives the same facts as the whole file.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import gguf
import numpy as np

from halogen.llamacpp.gguf_facts import MAX_BLOCK_COUNT, MAX_COUNT, GgufFacts, InfoValue

CHUNK = 8 * 1024 * 1024
MAX_INFO_ARRAY = 1024  # per-layer arrays are kept; vocabularies are not
MAX_INFO_STRING = 1024  # names and licenses are kept; a long description or template is not
MAX_INFO_ELEMENTS = 4096  # array elements kept over the whole header: 8 per-layer keys of 512 layers
MAX_INFO_TEXT = 16 * 1024  # characters of strings kept over the whole header

# The bounds of a header halogen reads: the largest real values, times a margin. A file past one
# is refused before anything is allocated for it.
MAX_KV = 1024
"""Key/values: real files carry tens (SmolLM2's 30-odd, a Gemma 3's about 40)."""
MAX_TENSORS = 65_536
"""Tensors: Llama 3.1 405B has 1,138 (126 blocks of 9, and 4 more), the most in one file we know."""
MAX_ARRAY = 1 << 21
"""Elements of one array: the largest vocabularies are Gemma 3's 262,144 tokens (and as many
scores and types), the longest merge lists Llama 3's 280,147; 2,097,152 is over 7 times either."""
MAX_STRINGS = 1 << 22
"""Strings in the whole header, each stepped over one at a time: every token and every merge is one."""
MAX_STRING = 64 << 20
"""Bytes of one string: chat templates take kilobytes; a whole tokenizer.json (the optional
tokenizer.huggingface.json key) tens of megabytes."""
MAX_KEY = 1024
"""Bytes of a key: the longest llama.cpp defines (src/llama-arch.cpp) are under 64."""
MAX_NAME = 63
"""Bytes of a tensor's name: llama.cpp refuses GGML_MAX_NAME (64) or more (ggml/include/ggml.h)."""
MAX_DIMS = 4
"""Dimensions of a tensor: GGML_MAX_DIMS (ggml/include/ggml.h)."""
MAX_ELEMENTS = (1 << 63) - 1
"""Elements of one tensor: llama.cpp refuses a count int64 cannot hold (gguf.cpp)."""

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

# GGUF value types (enum gguf_type, ggml/include/gguf.h) with their struct codes.
STRING, ARRAY = 8, 9
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
_BOOL, _FLOAT32, _UINT32 = 7, 6, 4
_MIN_KV = 8 + 1 + 4 + 1  # a one-byte key and a one-byte value
_MIN_TENSOR = 8 + 4 + 4 + 8  # an empty name, no dimensions
HINT = "the file is damaged, or was not written by llama.cpp's tools: download it again"


class Unreadable(ValueError):
    """A header halogen does not read: where (the byte offset), in what (the field), and why."""

    hint = HINT

    def __init__(self, offset: int, field: str, message: str) -> None:
        self.offset, self.field, self.message = offset, field, message
        super().__init__(f"at byte {offset}, {field}: {message}")


class Truncated(Unreadable):
    """The file ends inside its header: a partial file. `offset` is where the missing bytes start."""


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


class _Stream:
    """A file read forward through one buffer: every read says how many bytes it needs first."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self.size = fh, size
        self._buf, self._base, self._pos = b"", 0, 0
        self.order = "<"

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def need(self, n: int, field: str) -> None:
        if n > self.size - self.offset:
            raise Truncated(
                self.offset, field, f"needs {n} more bytes, and the file ends at byte {self.size}"
            )

    def take(self, n: int, field: str) -> bytes:
        if self._pos + n > len(self._buf):
            self.need(n, field)
            self._fh.seek(self.offset)
            self._base, self._pos = self.offset, 0
            self._buf = self._fh.read(max(n, CHUNK))
            if len(self._buf) < n:  # the file shrank while being read
                raise Truncated(self.offset, field, f"the file ends at byte {self.offset + len(self._buf)}")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def read_at(self, offset: int, n: int, field: str) -> bytes:
        """`n` bytes at `offset`, already checked to be in the file (a key's array, read again)."""
        self._fh.seek(offset)
        data = self._fh.read(n)
        if len(data) < n:  # the file shrank while being read
            raise Truncated(offset, field, f"the file ends at byte {offset + len(data)}")
        return data

    def skip(self, n: int, field: str) -> None:
        self.need(n, field)
        if self._pos + n <= len(self._buf):
            self._pos += n
        else:
            self._base, self._buf, self._pos = self.offset + n, b"", 0

    def scalar(self, code: str, field: str) -> int | float:
        raw = self.take(struct.calcsize(code), field)
        value: int | float = struct.unpack(self.order + code, raw)[0]
        return value

    def u32(self, field: str) -> int:
        return int(self.scalar("I", field))

    def u64(self, field: str) -> int:
        return int(self.scalar("Q", field))

    def length(self, field: str, limit: int) -> int:
        """A string's length, within `limit` and the file."""
        at = self.offset
        n = self.u64(field)
        if n > limit:
            raise Unreadable(at, field, f"a string of {n} bytes, over the {limit} halogen reads")
        self.need(n, field)
        return n

    def skip_strings(self, count: int, field: str) -> None:
        """Step over `count` strings without building them: the lengths are read in place."""
        unpack = struct.Struct(self.order + "Q").unpack_from
        buf, pos, done = self._buf, self._pos, 0
        while done < count:
            if pos + 8 <= len(buf):
                n = unpack(buf, pos)[0]
                if n <= MAX_STRING and pos + 8 + n <= len(buf):
                    pos += 8 + n
                    done += 1
                    continue
            self._pos = pos  # the slow way: at the buffer's end, or a length past a bound
            self.skip(self.length(f"{field}[{done}]", MAX_STRING), field)
            buf, pos = self._buf, self._pos
            done += 1
        self._pos = pos


@dataclass(frozen=True)
class _Key:
    offset: int  # where the key/value starts
    count: int | None = None  # elements, for an array
    value: InfoValue | None = None  # a scalar or a short string; None: not kept
    items: tuple[int, int] | None = None  # a numeric array: its item type and where its items start


class _Header:
    """The key/values and tensor totals of one header."""

    def __init__(self, stream: _Stream) -> None:
        self.s = stream
        self.keys: dict[str, _Key] = {}
        self.parameters = 0
        self.tensor_bytes = 0
        self.weight = Counter[str]()
        self._types: dict[str, int] = {}
        self._strings = 0

    def read(self) -> None:
        s = self.s
        if s.take(4, "magic") != b"GGUF":
            raise Unreadable(0, "magic", "not a GGUF file (it does not start with GGUF)")
        version = s.u32("version")
        if version & 0xFFFF == 0:  # written on a machine of the other byte order (gguf-py does the same)
            s.order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in (2, 3):
            raise Unreadable(4, "version", f"GGUF version {version}: only versions 2 and 3 are read")
        n_tensors = self._count("tensor count", MAX_TENSORS, "tensors")
        n_kv = self._count("key/value count", MAX_KV, "key/values")
        s.need(n_tensors * _MIN_TENSOR + n_kv * _MIN_KV, "key/value count")
        for i in range(n_kv):
            self._kv(i)
        alignment = self.keys.get("general.alignment")
        if alignment is not None:
            value = alignment.value
            if not isinstance(value, int) or self._types.get("general.alignment") != _UINT32:
                raise Unreadable(alignment.offset, "general.alignment", "must be a uint32")
            if value == 0 or value & (value - 1):
                raise Unreadable(alignment.offset, "general.alignment", f"{value} is not a power of 2")
        names: set[bytes] = set()
        for i in range(n_tensors):
            self._tensor(i, names)

    def _count(self, field: str, limit: int, what: str) -> int:
        at = self.s.offset
        n = self.s.u64(field)
        if n > limit:
            raise Unreadable(at, field, f"{n} {what}, over the {limit} halogen reads")
        return n

    def _kv(self, i: int) -> None:
        s = self.s
        at = s.offset
        raw = s.take(s.length(f"key #{i}", MAX_KEY), f"key #{i}")
        if not raw:
            raise Unreadable(at, f"key #{i}", "the key is empty")
        key = raw.decode("utf-8", "replace")
        if key in self.keys:
            raise Unreadable(at, key, f"the key appears twice (first at byte {self.keys[key].offset})")
        kind = s.u32(key)
        self._types[key] = kind
        if kind == ARRAY:
            item = s.u32(key)
            count_at = s.offset
            count = s.u64(key)
            if item == ARRAY or (item != STRING and item not in _SCALAR):
                raise Unreadable(at, key, f"an array of GGUF type {item}, which llama.cpp does not read")
            if count > MAX_ARRAY:
                raise Unreadable(
                    count_at, key, f"an array of {count} elements, over the {MAX_ARRAY} halogen reads"
                )
            if item == STRING:
                if self._strings + count > MAX_STRINGS:
                    raise Unreadable(
                        count_at,
                        key,
                        f"{self._strings + count} strings so far, over the {MAX_STRINGS} halogen reads",
                    )
                self._strings += count
                s.need(count * 8, key)
                s.skip_strings(count, key)
                self.keys[key] = _Key(at, count, None if count else [])  # gguf-py: [] has no item type
                return
            # Stepped over now, read once the header is whole and only if wanted (array()).
            self.keys[key] = _Key(at, count, None, (item, s.offset))
            s.skip(count * struct.calcsize(_SCALAR[item]), key)
            return
        if kind == STRING:
            n = s.length(key, MAX_STRING)
            if n > 4 * MAX_INFO_STRING:  # more characters than kept, whatever the bytes are
                s.skip(n, key)
                self.keys[key] = _Key(at)
                return
            text = s.take(n, key).decode("utf-8", "replace")
            self.keys[key] = _Key(at, None, text if len(text) <= MAX_INFO_STRING else None)
            return
        if kind not in _SCALAR:
            raise Unreadable(at, key, f"GGUF type {kind}, which llama.cpp does not read")
        self.keys[key] = _Key(at, None, _scalar(s.scalar(_SCALAR[kind], key), kind))

    def value(self, key: str) -> InfoValue | None:
        """A key's value as halogen keeps it: a scalar, a string of up to MAX_INFO_STRING
        characters, a numeric array of up to MAX_INFO_ARRAY elements; None for anything else."""
        entry = self.keys.get(key)
        if entry is None or entry.items is None:
            return entry.value if entry is not None else None
        if entry.count is None or entry.count > MAX_INFO_ARRAY:
            return None
        item, at = entry.items
        raw = self.s.read_at(at, entry.count * struct.calcsize(_SCALAR[item]), key)
        values = struct.unpack(f"{self.s.order}{entry.count}{_SCALAR[item]}", raw)
        return [_scalar(v, item) for v in values]  # type: ignore[return-value]

    def _tensor(self, i: int, names: set[bytes]) -> None:
        s = self.s
        at = s.offset
        size = s.length(f"tensor #{i}", MAX_STRING)
        if size > MAX_NAME:
            raise Unreadable(at, f"tensor #{i}", f"a name of {size} bytes, over llama.cpp's {MAX_NAME}")
        raw = s.take(size, f"tensor #{i}")
        name = f"tensor {raw.decode('utf-8', 'replace')!r}"
        if raw in names:
            raise Unreadable(at, name, "the name appears twice")
        names.add(raw)
        n_dims = s.u32(name)
        if n_dims > MAX_DIMS:
            raise Unreadable(at, name, f"{n_dims} dimensions, over llama.cpp's {MAX_DIMS}")
        elements = 1
        for _ in range(n_dims):
            elements *= s.u64(name)
        if elements > MAX_ELEMENTS:
            raise Unreadable(at, name, f"{elements} elements, more than llama.cpp counts (2^63 - 1)")
        code = s.u32(name)
        try:
            kind = gguf.GGMLQuantizationType(code)
            block, type_size = gguf.GGML_QUANT_SIZES[kind]
        except (ValueError, KeyError):
            raise Unreadable(at, name, f"ggml type {code}, which this gguf package does not know") from None
        s.u64(name)  # the data's offset: the data is not read
        n_bytes = elements * type_size // block
        self.parameters += elements
        self.tensor_bytes += n_bytes
        self.weight[kind.name] += n_bytes


def _scalar(raw: int | float, kind: int) -> InfoValue:
    if kind == _BOOL:
        return bool(raw)
    if kind == _FLOAT32:
        # The shortest text that reads back as the stored float32 (1e-05, not 9.99999974e-06).
        return float(str(np.float32(raw)))
    return raw


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def read_facts(path: Path) -> GgufFacts:
    """The facts of one GGUF file's header; raises Unreadable (a ValueError) naming the byte and
    the field when it is not a GGUF file halogen reads, Truncated when it ends inside its header."""
    with path.open("rb") as fh:
        header = _Header(_Stream(fh, os.fstat(fh.fileno()).st_size))
        header.read()
        return _facts(header)


def _facts(header: _Header) -> GgufFacts:
    keys = header.keys
    end = header.s.offset
    value = header.value
    arch = value("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise Unreadable(end, "general.architecture", "the header has no general.architecture")

    def a(key: str) -> InfoValue | None:
        return value(f"{arch}.{key}")

    def count(key: str, default: int = 0) -> int:
        """A whole number the facts hold: a negative one (from a signed type) is refused."""
        number = _int(value(key), default)
        if number < 0:
            raise Unreadable(keys[key].offset, key, f"{number} is negative")
        return number

    n_layer = count(f"{arch}.block_count")
    if n_layer > MAX_BLOCK_COUNT:
        raise Unreadable(
            keys[f"{arch}.block_count"].offset,
            f"{arch}.block_count",
            f"{n_layer} layers, over the {MAX_BLOCK_COUNT} llama.cpp loads (LLAMA_MAX_LAYERS)",
        )

    def per_layer(key: str) -> int | list[int]:
        """llama.cpp's `llama_model_loader::get_key_or_arr` (src/llama-model-loader.cpp): one
        value, or an array of exactly one per layer."""
        name = f"{arch}.{key}"
        entry = keys.get(name)
        if entry is None or entry.count is None:
            return count(name)
        if entry.count != n_layer:
            raise Unreadable(
                entry.offset,
                name,
                f"{entry.count} values for the {n_layer} layers of {arch}.block_count: llama.cpp "
                "refuses a per-layer array of another length",
            )
        values = value(name)
        if not isinstance(values, list) or not all(_int(v, -1) >= 0 for v in values):
            return 0
        ints = [int(v) for v in values]
        return ints if len(set(ints)) > 1 else (ints[0] if ints else 0)

    n_embd = count(f"{arch}.embedding_length")
    n_head = per_layer("attention.head_count")
    n_head_kv = per_layer("attention.head_count_kv") if f"{arch}.attention.head_count_kv" in keys else n_head
    first_head = n_head[0] if isinstance(n_head, list) else n_head
    head_dim = n_embd // first_head if first_head else 0
    window = count(f"{arch}.attention.sliding_window")
    layers: list[int] = []
    if window:
        pattern = a("attention.sliding_window_pattern")
        if isinstance(pattern, list):
            layers = [i for i, swa in enumerate(pattern[:n_layer]) if swa]
        elif arch in SWA_PATTERN:
            n_pattern, dense_first = SWA_PATTERN[arch]
            layers = swa_layers(n_layer, _int(pattern, n_pattern), dense_first)
    vocab = count(f"{arch}.vocab_size")
    tokens = keys.get("tokenizer.ggml.tokens")
    if not vocab and tokens is not None and tokens.count is not None:
        vocab = tokens.count
    if max(header.parameters, header.tensor_bytes) > MAX_COUNT:
        raise Unreadable(end, "tensors", "their sizes add up to more than 2^64 - 1")
    info = _info(header, arch)
    # Ollama reports general.parameter_count, counted from the tensors when the file has none.
    info.setdefault("general.parameter_count", header.parameters)
    return GgufFacts(
        architecture=arch,
        name=str(value("general.name") or ""),
        fileType=_file_type(value("general.file_type"), header.weight),
        parameterCount=header.parameters,
        tensorBytes=header.tensor_bytes,
        contextLength=count(f"{arch}.context_length"),
        blockCount=n_layer,
        embeddingLength=n_embd,
        feedForwardLength=per_layer("feed_forward_length"),
        vocabSize=vocab,
        headCount=n_head,
        headCountKv=n_head_kv,
        keyLength=count(f"{arch}.attention.key_length", head_dim),
        valueLength=count(f"{arch}.attention.value_length", head_dim),
        kvLoraRank=count(f"{arch}.attention.kv_lora_rank"),
        ropeDimensionCount=count(f"{arch}.rope.dimension_count"),
        slidingWindow=window,
        slidingWindowLayers=layers,
        expertCount=count(f"{arch}.expert_count"),
        expertUsedCount=count(f"{arch}.expert_used_count"),
        expertFeedForwardLength=count(f"{arch}.expert_feed_forward_length"),
        info=info,
    )


def _info(header: _Header, arch: str) -> dict[str, InfoValue]:
    """The general.*, <arch>.* and tokenizer.ggml.* keys Ollama's model_info shows, in the
    header's order, until MAX_INFO_ELEMENTS array elements and MAX_INFO_TEXT characters are kept:
    halogen.lock stays small (it is read back whole)."""
    info: dict[str, InfoValue] = {}
    elements = text = 0
    for key in header.keys:
        if not key.startswith(("general.", f"{arch}.", "tokenizer.ggml.")):
            continue
        value = header.value(key)
        if isinstance(value, list):
            elements += len(value)
            if elements > MAX_INFO_ELEMENTS:
                continue
        elif isinstance(value, str):
            text += len(value)
            if text > MAX_INFO_TEXT:
                continue
        if value is not None:
            info[key] = value
    return info


def _file_type(code: InfoValue | None, weight: Counter[str]) -> str:
    if isinstance(code, int):
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (or an unknown) file type: the type holding most of the weights.
    return weight.most_common(1)[0][0] if weight else "unknown"
