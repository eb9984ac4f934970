"""The KV cache with several slots (-np N), unified or not, and with sliding-window layers: the
cells llama.cpp allocates, as the version the tests build (llama-cpp-python 0.3.36, which vendors
ggml-org/llama.cpp@0c1e57098) computes them.

- src/llama-context.cpp, llama_context::llama_context: n_ctx is padded to 256; without
  kv_unified each of the n_seq_max streams gets `n_ctx_seq = GGML_PAD(n_ctx / n_seq_max, 256)`
  cells (and n_ctx becomes n_ctx_seq * n_seq_max); with it, one stream of n_ctx cells.
- src/llama-kv-cache.cpp, llama_kv_cache::llama_kv_cache: `n_stream = unified ? 1 : n_seq_max`,
  and each layer's K and V are `n_embd_k_gqa x kv_size x n_stream` tensors.
- src/llama-kv-cache-iswa.cpp, llama_kv_cache_iswa::llama_kv_cache_iswa: a sliding-window
  layer's cache holds `GGML_PAD(min(size_base, n_swa * (unified ? n_seq_max : 1) + n_ubatch), 256)`
  cells per stream, size_base being the full layers' kv_size.

The expected figures below are worked out by hand from those lines, for a small model: two
layers, two KV heads of 64 for K and for V, f16, so one cell of one layer is 2 * (64*2 + 64*2)
= 512 bytes."""

from __future__ import annotations

from halogen.compiler import memory
from halogen.llamacpp.gguf_facts import GgufFacts

CELL = 512  # bytes per cell per layer, K and V together


def small(**extra: object) -> GgufFacts:
    base: dict[str, object] = {
        "architecture": "llama",
        "fileType": "F16",
        "parameterCount": 0,
        "tensorBytes": 0,
        "contextLength": 8192,
        "blockCount": 2,
        "embeddingLength": 128,
        "headCount": 2,
        "headCountKv": 2,
        "keyLength": 64,
        "valueLength": 64,
    }
    return GgufFacts.model_validate({**base, **extra})


def kv(facts: GgufFacts, *argv: str) -> int:
    return memory.estimate(facts, list(argv)).kv_cache


def test_split_slots_each_get_their_share_of_the_context_padded_to_256() -> None:
    # n_ctx 4096, 3 streams: n_ctx_seq = GGML_PAD(4096 / 3 = 1365, 256) = 1536 cells each.
    assert kv(small(), "-c", "4096", "-np", "3") == 1536 * 3 * 2 * CELL
    # With --kv-unified: one stream of 4096 cells.
    assert kv(small(), "-c", "4096", "-np", "3", "--kv-unified") == 4096 * 1 * 2 * CELL
    # A share that divides evenly needs no padding: 8192 / 4 = 2048.
    assert kv(small(), "-c", "8192", "-np", "4") == 2048 * 4 * 2 * CELL


def test_sliding_window_layers_hold_their_window_per_stream_when_slots_are_split() -> None:
    facts = small(slidingWindow=1024, slidingWindowLayers=[0])
    # -np 2, not unified: size_base = n_ctx_seq = 8192 / 2 = 4096; the window layer holds
    # GGML_PAD(min(4096, 1024 * 1 + 512), 256) = 1536 cells in each of the 2 streams.
    assert kv(facts, "-c", "8192", "-np", "2") == (1536 + 4096) * 2 * CELL
    # Unified: size_base 8192, one stream; the window is kept for each of the 2 sequences:
    # GGML_PAD(min(8192, 1024 * 2 + 512), 256) = 2560.
    assert kv(facts, "-c", "8192", "-np", "2", "-kvu") == (2560 + 8192) * 1 * CELL
    # --swa-full: the window layer holds as much as the others.
    assert kv(facts, "-c", "8192", "-np", "2", "--swa-full") == (4096 + 4096) * 2 * CELL
