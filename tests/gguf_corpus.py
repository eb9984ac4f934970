"""Crafted GGUF headers, written byte by byte (the `gguf` package's writer refuses most of them),
and a runner that reads each in a child process with its time and peak memory measured.

The corpus: the six headers that blew up `halogen lock` (issue 17, finding 4), and a small valid
header cut at every field boundary. The boundaries come from gguf-py's own reader of the whole
file, not from halogen's. `python -m tests.gguf_corpus FOLDER` is the child side: it imports
halogen once, then forks one child per file so each is measured alone.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# GGUF value types (enum gguf_type, ggml/include/gguf.h).
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
CODE = {
    U8: "B",
    I8: "b",
    U16: "H",
    I16: "h",
    U32: "I",
    I32: "i",
    F32: "f",
    BOOL: "?",
    U64: "Q",
    I64: "q",
    F64: "d",
}
F32_TYPE = 0  # GGML_TYPE_F32

CPU_SECONDS = 2
PEAK_BYTES = 200 * 1024 * 1024


def string(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, kind: int, value: object) -> bytes:
    """One key/value: a scalar, a string, or (kind ARR) a tuple (item type, values)."""
    head = string(key) + struct.pack("<I", kind)
    if kind == STR:
        return head + string(str(value))
    if kind == ARR:
        item, values = value  # type: ignore[misc]
        return head + array_body(item, list(values))
    return head + struct.pack("<" + CODE[kind], value)


def array_body(item: int, values: list[object]) -> bytes:
    body = struct.pack("<IQ", item, len(values))
    if item == STR:
        return body + b"".join(string(str(v)) for v in values)
    return body + struct.pack(f"<{len(values)}{CODE[item]}", *values)


def tensor(name: str, dims: tuple[int, ...], offset: int, kind: int = F32_TYPE) -> bytes:
    return string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, kind, offset)


def gguf(kvs: list[bytes], tensors: list[bytes] = (), *, n_kv: int | None = None,  # type: ignore[assignment]
         n_tensors: int | None = None, data: int = 0) -> bytes:  # fmt: skip
    """A file: the header, then `data` bytes of tensor data after the 32-byte alignment."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)  # fmt: skip
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * ((-len(body) % 32) + data) if data else body


def arch(name: str = "llama") -> bytes:
    return kv("general.architecture", STR, name)


def small() -> bytes:
    """A valid small llama: every kind of value, two layers, two tensors and their data."""
    kvs = [
        arch(),
        kv("general.name", STR, "tiny"),
        kv("general.file_type", U32, 0),
        kv("llama.block_count", U32, 2),
        kv("llama.context_length", U32, 4096),
        kv("llama.embedding_length", U32, 8),
        kv("llama.feed_forward_length", ARR, (U32, [16, 32])),
        kv("llama.attention.head_count", U32, 2),
        kv("llama.attention.head_count_kv", ARR, (U32, [1, 1])),
        kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        kv("llama.rope.freq_base", F64, 10000.0),
        kv("llama.use_parallel_residual", BOOL, True),
        kv("tokenizer.ggml.model", STR, "gpt2"),
        kv("tokenizer.ggml.tokens", ARR, (STR, ["a", "b", "", "é"])),
        kv("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.0, -2.0, -3.0])),
        kv("tokenizer.ggml.bos_token_id", I32, 1),
    ]
    tensors = [tensor("token_embd.weight", (8, 4), 0), tensor("output_norm.weight", (8,), 128)]
    return gguf(kvs, tensors, data=160)


def swa(block_count: int, kind: int = U32) -> list[bytes]:
    return [
        arch("gemma3"),
        kv("gemma3.block_count", kind, block_count),
        kv("gemma3.context_length", U32, 8192),
        kv("gemma3.embedding_length", U32, 64),
        kv("gemma3.attention.head_count", U32, 4),
        kv("gemma3.attention.sliding_window", U32, 512),
    ]


def crafted() -> dict[str, bytes]:
    """The six headers of issue 17 (finding 4), as small as they can be."""
    tiny = [arch(), kv("llama.block_count", U32, 2)]
    return {
        "uint8 array claiming 2^40 elements, no data": gguf(
            [*tiny, string("x.blob") + struct.pack("<IIQ", ARR, U8, 1 << 40)]
        ),
        "block_count 1e9 with a sliding window": gguf(swa(10**9)),
        "a real array of 4 M elements": gguf([*tiny, kv("x.blob", ARR, (U8, [0] * 4_000_000))]),
        "2 M empty strings": gguf([*tiny, kv("x.strings", ARR, (STR, [""] * 2_000_000))]),
        "block_count 1e12": gguf(swa(10**12, U64)),
        "head_count_kv [1, 2] with block_count 4": gguf(
            [arch(), kv("llama.block_count", U32, 4), kv("llama.attention.head_count_kv", ARR, (U32, [1, 2]))]
        ),
    }


def boundaries(path: Path) -> tuple[list[int], int]:
    """Every field boundary of a valid file's header, as gguf-py's reader sees it, and where the
    header ends (after the last tensor info)."""
    import gguf as gguf_py

    reader = gguf_py.GGUFReader(path)
    cuts = {0}
    fields = list(reader.fields.values()) + [t.field for t in reader.tensors]
    for field in fields:
        at = field.offset
        cuts.add(at)
        for part in field.parts:
            at += int(part.nbytes)
            cuts.add(at)
    end = max(cuts)
    return sorted(cuts), end


def cases(folder: Path) -> dict[str, Path]:
    """The corpus written under `folder`: name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for i, (name, data) in enumerate(crafted().items()):
        out[name] = folder / f"crafted-{i}.gguf"
        out[name].write_bytes(data)
    whole = folder / "small.gguf"
    whole.write_bytes(small())
    cuts, end = boundaries(whole)
    out["the valid small header"] = whole
    for cut in cuts:
        name = f"small cut at byte {cut}" + (" (the header's end)" if cut == end else "")
        out[name] = folder / f"cut-{cut}.gguf"
        out[name].write_bytes(small()[:cut])
    return out


@dataclass(frozen=True)
class Result:
    name: str
    outcome: str  # "read", or the error's text
    wall: float  # seconds
    cpu: float  # seconds, user + system
    peak: int  # bytes: the child's peak resident set, the interpreter included
    size: int  # bytes of the file

    @property
    def within_bounds(self) -> bool:
        return self.cpu <= CPU_SECONDS and self.peak <= PEAK_BYTES and not self.outcome.startswith("crash")


def measure(files: dict[str, Path], timeout: float = 30) -> list[Result]:
    """Read each file as `halogen lock` does, each in its own forked child of a fresh interpreter."""
    names = list(files)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.gguf_corpus", *(str(files[n]) for n in names)],
        capture_output=True,
        text=True,
        timeout=timeout * len(names),
        cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-4000:])
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return [Result(name, **row) for name, row in zip(names, rows, strict=True)]


def _read_as_lock_does(path: Path) -> str:
    """What `halogen lock` then `halogen validate` do with one file: read its facts, write and
    read back the lock, estimate the model's memory."""
    from halogen.compiler import memory
    from halogen.compiler.site.lock import Lock, LockedFile, dumps, read_lock
    from halogen.llamacpp.gguf_header import Unreadable, read_facts

    try:
        facts = read_facts(path)
    except Unreadable as exc:
        return str(exc)
    lock = path.with_suffix(".lock")
    lock.write_bytes(dumps(Lock({"m.gguf": LockedFile(1, "0" * 64, facts)})))
    back = read_lock(lock).facts("m.gguf")
    assert back == facts
    memory.estimate(back, ["-c", "4096"])
    return "read"


def _child(path: Path, write: int) -> None:
    """The forked child: a CPU-time limit, an address-space backstop, then one read."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS + 1, CPU_SECONDS + 1))
    vm = _vm_size()
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * PEAK_BYTES, vm + 2 * PEAK_BYTES))
    try:
        outcome = _read_as_lock_does(path)
    except BaseException as exc:  # anything but Unreadable is the bug the corpus looks for
        outcome = f"crash: {type(exc).__name__}: {exc}"[:300]
    os.write(write, outcome.encode())
    os._exit(0)


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _run(paths: list[str]) -> Iterator[str]:
    from halogen.compiler import memory  # noqa: F401  (imported once, before the forks)
    from halogen.compiler.site import lock  # noqa: F401  (imported once, before the forks)
    from halogen.llamacpp import gguf_header  # noqa: F401  (imported once, before the forks)

    for arg in paths:
        path = Path(arg)
        read, write = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(path, write)
        os.close(write)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
        with os.fdopen(read, "rb") as fh:
            outcome = fh.read().decode() or f"crash: the child ended with status {status}"
        yield json.dumps(
            {
                "outcome": outcome,
                "wall": round(wall, 4),
                "cpu": round(usage.ru_utime + usage.ru_stime, 4),
                "peak": usage.ru_maxrss * 1024,
                "size": path.stat().st_size,
            }
        )


if __name__ == "__main__":
    for row in _run(sys.argv[1:]):
        print(row, flush=True)
