"""`python -m bench.gguf_corpus --write`: each crafted GGUF header's time and peak memory, as
`halogen lock` reads it (tests/gguf_corpus.py: a forked child of a fresh interpreter per file).

Beside the corpus the tests bound (issue 17's six headers, a valid small header cut at every field
boundary), headers at halogen's own bounds show the worst a file can cost without being refused:
every string the header may hold (MAX_STRINGS), every tensor (MAX_TENSORS), every key (MAX_KV).
"""

from __future__ import annotations

import argparse
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

from halogen.llamacpp import gguf_header
from tests import gguf_corpus as corpus
from tests.gguf_corpus import ARR, STR, U32, arch, array_body, gguf, kv, string, tensor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "gguf_corpus.md"


def at_the_bounds() -> dict[str, bytes]:
    """Headers as large as halogen reads, each one step under a bound."""
    tiny = [arch(), kv("llama.block_count", U32, 2)]
    half = gguf_header.MAX_STRINGS // 2
    strings = [
        string(f"x.strings{i}") + struct.pack("<I", ARR) + array_body(STR, [""] * half) for i in (0, 1)
    ]
    keys = [kv(f"general.k{i}", ARR, (U32, list(range(64)))) for i in range(gguf_header.MAX_KV - len(tiny))]
    texts = [kv(f"general.s{i}", STR, "x" * 1024) for i in range(gguf_header.MAX_KV - len(tiny))]
    return {
        f"{gguf_header.MAX_STRINGS} empty strings in two arrays (MAX_STRINGS)": gguf([*tiny, *strings]),
        f"{gguf_header.MAX_TENSORS} tensors (MAX_TENSORS)": gguf(
            tiny, [tensor(f"t.{i}", (4, 4), 0) for i in range(gguf_header.MAX_TENSORS)]
        ),
        f"{gguf_header.MAX_KV} keys, each an array of 64 (MAX_KV; MAX_INFO_ELEMENTS kept)": gguf(
            [*tiny, *keys]
        ),
        f"{gguf_header.MAX_KV} keys, each a kept string of 1024 characters (MAX_KV)": gguf([*tiny, *texts]),
        "a Gemma 3 sized vocabulary (262,144 tokens of 8 bytes, scores, types)": gguf(
            [
                *tiny,
                kv("tokenizer.ggml.tokens", ARR, (STR, [f"{i:08d}" for i in range(262_144)])),
                kv("tokenizer.ggml.scores", ARR, (corpus.F32, [0.0] * 262_144)),
                kv("tokenizer.ggml.token_type", ARR, (corpus.I32, [1] * 262_144)),
            ]
        ),
    }


# The same runner on the reader before (gguf-py's GGUFReader, commit 097a6a0), once, by hand: the
# child had an address-space backstop of 400 MB over its start and 3 s of CPU, so these stop where
# the limits stopped them (the issue measured 2.85 GB and a minute without them).
BEFORE = [
    "Before (gguf-py's GGUFReader, commit 097a6a0; the child stopped at 3 s of CPU or 400 MB more",
    "address space than it started with):",
    "",
    "| header | CPU s | peak MB | outcome |",
    "|---|---:|---:|---|",
    "| uint8 array claiming 2^40 elements, no data | 3.00 | 407.7 | killed at the CPU limit |",
    "| block_count 1e9 with a sliding window | 1.41 | 424.3 | MemoryError |",
    "| a real array of 4 M elements | 2.85 | 198.3 | killed at the CPU limit |",
    "| 2 M empty strings | 2.78 | 219.8 | killed at the CPU limit |",
    "| block_count 1e12 | 1.15 | 424.3 | MemoryError |",
    "| head_count_kv [1, 2] with block_count 4 | 0.05 | 40.7 | IndexError (validate: exit 3) |",
    "| the valid small header | 0.06 | 43.1 | read |",
    "| small cut at byte 875 (the header's end) | 0.01 | 38.3 | ValueError: cannot reshape array |",
    "| small cut at byte 628 | 0.01 | 36.1 | IndexError |",
]


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    options = parser.parse_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        files = corpus.cases(Path(tmp) / "corpus")
        for i, (name, data) in enumerate(at_the_bounds().items()):
            files[name] = Path(tmp) / f"bound-{i}.gguf"
            files[name].write_bytes(data)
        results = corpus.measure(files)
    lines = [
        "# Crafted GGUF headers: time and peak memory (halogen/llamacpp/gguf_header.py)",
        "",
        "`python -m bench.gguf_corpus --write`. Each file is read as `halogen lock` then `validate` do",
        "(the header's facts, the lock written and read back, the memory estimate) in a forked child",
        "of a fresh interpreter (tests/gguf_corpus.py). CPU: user + system of the child. Peak: the",
        "child's maximum resident set (ru_maxrss), the interpreter's own ~30 MB included. The tests",
        f"bound every corpus case to {corpus.CPU_SECONDS} s of CPU and {corpus.PEAK_BYTES >> 20} MB",
        "(tests/compiler/test_gguf_header.py). Outcome: `read`, or the error `halogen lock` prints.",
        "",
        "| header | bytes | wall s | CPU s | peak MB | outcome |",
        "|---|---:|---:|---:|---:|---|",
    ]
    worst = max(results, key=lambda r: r.cpu)
    for r in results:
        outcome = r.outcome.replace("|", "\\|")
        lines.append(
            f"| {r.name} | {r.size} | {r.wall:.3f} | {r.cpu:.3f} | {r.peak / 2**20:.1f} | {outcome} |"
        )
    lines += [
        "",
        f"{len(results)} files; the most CPU: {worst.name} ({worst.cpu:.3f} s); the largest peak: "
        f"{max(r.peak for r in results) / 2**20:.1f} MB. All within the bounds: "
        f"{all(r.within_bounds for r in results)}.",
    ]
    lines += ["", *BEFORE]
    text = "\n".join(lines) + "\n"
    print(text)
    if options.write:
        RESULTS.write_text(text)
    return 0 if all(r.within_bounds for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
