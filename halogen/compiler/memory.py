"""How much memory llama-server takes for a model, from the GGUF header's facts and its flags.

Pure: no I/O, no gguf package. The figures follow llama.cpp's own allocations in the version the
tests build (llama-cpp-python 0.3.36's vendored llama.cpp), each named where it is made:

- **weights**: every tensor's bytes (`load_tensors: ... model buffer size`, src/llama-model.cpp).
  Whether mmapped or read (--no-mmap), once the warm-up decode has touched them they are resident.
- **KV cache**: per layer `n_embd_k_gqa(il) = n_embd_head_k * n_head_kv(il)` elements of `-ctk`'s
  type per cell for K, the same with `-ctv` for V (`llama_kv_cache::llama_kv_cache`,
  src/llama-kv-cache.cpp; `llama_hparams::n_embd_k_gqa`, src/llama-hparams.cpp). The cells are
  the context padded to 256 (`cparams.n_ctx = GGML_PAD(n_ctx, 256)`, src/llama-context.cpp); with
  a split cache (-np N without --kv-unified) each of the N streams holds n_ctx/N, padded. Layers with
  a sliding window hold `GGML_PAD(min(n_ctx, n_swa * (unified ? n_seq : 1) + n_ubatch), 256)` cells
  unless --swa-full (`llama_kv_cache_iswa`, src/llama-kv-cache-iswa.cpp).
- **output buffer**: logits for one token per sequence, `n_vocab * n_seq_max` floats
  (`llama_context::output_reserve`, src/llama-context.cpp), plus `n_embd` floats each with
  --embeddings.
- **compute buffer** (`sched_reserve: ... compute buffer size`): the attention mask, `n_kv *
  n_ubatch` halves with flash attention (the mask is f16 then) and, without it, the `n_kv * n_ubatch
  * n_head` floats of KQ; plus the activations ggml-alloc keeps alive for one ubatch, modelled as
  `n_ubatch * (4 * n_ff + 2 * n_embd)` floats, with n_ff the used experts' width for MoE (the FFN's
  gate, up, their product and output, the residual and the norm). This last term is the one
  approximation: ggml-alloc reuses buffers along the graph, and its exact peak is a property of the
  graph, not of a formula. bench/memory.py compares it with what llama-server reports.
- **overhead**: the process beyond llama.cpp's buffers (binary and libraries, the vocabulary, the
  slots, the HTTP server): a constant measured on SmolLM2 as PSS minus the buffers above.

llama-server's defaults (tools/server/server.cpp, common/common.h): no -c means the trained
context; no -np means 4 slots sharing one unified cache; n_ubatch 512 (capped by -b);
flash attention `auto`, which is on for the CPU backend.

The figures are the CPU backend's, which the tests run. On a GPU backend (-ngl) the weights and
the cache move to device memory (on Strix Halo, GTT carved from the same RAM), so the total holds
to first order; the GPU's own compute buffers differ and are not modelled separately.

Not modelled: recurrent/SSM state (Mamba, RWKV), the CPU backend's repacked copies of some
quantizations (CPU_REPACK buffers), multimodal projectors, speculative drafts. A site that uses
them should set the budget with a margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from halogen.llamacpp import cmdline
from halogen.llamacpp.gguf_facts import GgufFacts

MiB = 1024 * 1024
OVERHEAD = 16 * MiB
PAD = 256
DEFAULT_UBATCH = 512
DEFAULT_BATCH = 2048
AUTO_SLOTS = 4

# Bytes per element of the KV cache types -ctk/-ctv accept (ggml's type traits: block size over
# elements per block, ggml/src/ggml.c `type_traits`).
CACHE_TYPES: dict[str, float] = {
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_1": 20 / 32,
    "iq4_nl": 18 / 32,
    "q5_0": 22 / 32,
    "q5_1": 24 / 32,
}


def _pad(n: int, to: int = PAD) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Flags:
    """The llama-server flags the estimate depends on, with llama-server's defaults."""

    ctx: int = 0  # 0: the trained context
    parallel: int = 0  # 0: auto (4 slots, unified cache)
    unified: bool = False
    cache_k: str = "f16"
    cache_v: str = "f16"
    ubatch: int = DEFAULT_UBATCH
    batch: int = DEFAULT_BATCH
    flash_attn: bool = True
    swa_full: bool = False
    embeddings: bool = False

    @classmethod
    def parse(cls, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Flags:
        """The flags of a llama-server command line, as halogen.llamacpp.cmdline reads them."""
        line = cmdline.read(argv, env)
        names = {
            "--ctx-size": "ctx",
            "--parallel": "parallel",
            "--cache-type-k": "cache_k",
            "--cache-type-v": "cache_v",
            "--ubatch-size": "ubatch",
            "--batch-size": "batch",
            "--flash-attn": "flash_attn",
            "--kv-unified": "unified",
            "--swa-full": "swa_full",
            "--embeddings": "embeddings",
        }
        values = {key: line.values[name] for name, key in names.items() if name in line.values}
        out: dict[str, object] = {}
        for key in ("ctx", "parallel", "ubatch", "batch"):
            raw = values.get(key)
            if raw is not None and raw.lstrip("-").isdigit():
                out[key] = max(0, int(raw))
        for key in ("cache_k", "cache_v"):
            raw = values.get(key)
            if raw is not None and raw.lower() in CACHE_TYPES:
                out[key] = raw.lower()
        fa = values.get("flash_attn")
        if fa is not None:
            out["flash_attn"] = fa.lower() not in ("off", "0", "false", "disabled")
        for key in ("unified", "swa_full", "embeddings"):
            if values.get(key) == "1":
                out[key] = True
        return cls(**out)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv_cache: int
    output: int
    compute: int
    overhead: int
    context: int  # the context the estimate is for, after llama.cpp's padding

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.output + self.compute + self.overhead


def kv_cache(facts: GgufFacts, flags: Flags, n_ctx: int) -> int:
    """Bytes of K and V over every layer (see the module's docstring)."""
    auto = flags.parallel == 0
    n_seq = AUTO_SLOTS if auto else max(1, flags.parallel)
    unified = auto or flags.unified or n_seq == 1
    n_stream = 1 if unified else n_seq
    cells_full = n_ctx if unified else _pad(n_ctx // n_seq)  # per stream
    n_ubatch = min(flags.ubatch, flags.batch) or DEFAULT_UBATCH
    cells_swa = cells_full
    if facts.slidingWindow and not flags.swa_full:
        cells_swa = _pad(min(cells_full, facts.slidingWindow * (n_seq if unified else 1) + n_ubatch))
    # Closed form over the layers, by kind (sliding or full), so the time does not grow with
    # blockCount; exact, as the per-layer sum in floats was while it stayed under 2^53.
    swa = {il for il in facts.slidingWindowLayers if 0 <= il < facts.blockCount}
    heads = facts.headCountKv
    if isinstance(heads, list):
        heads_swa = sum(heads[il] for il in swa if il < len(heads))
        heads_full = sum(heads[: facts.blockCount]) - heads_swa
    else:
        heads_swa, heads_full = heads * len(swa), heads * (facts.blockCount - len(swa))
    per_head = facts.keyLength * Fraction(CACHE_TYPES[flags.cache_k]) + facts.valueLength * Fraction(
        CACHE_TYPES[flags.cache_v]
    )
    return int((cells_swa * heads_swa + cells_full * heads_full) * n_stream * per_head)


def estimate(facts: GgufFacts, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Estimate:
    """What llama-server started with `argv` (and `env`) holds for the model `facts` describes."""
    flags = Flags.parse(argv, env)
    n_ctx = _pad(flags.ctx or facts.contextLength or 4096)
    n_seq = AUTO_SLOTS if flags.parallel == 0 else max(1, flags.parallel)
    n_ubatch = min(flags.ubatch, flags.batch) or DEFAULT_UBATCH
    output = facts.vocabSize * n_seq * 4 + (facts.embeddingLength * n_seq * 4 if flags.embeddings else 0)
    # The attention over the whole cache for one ubatch.
    if flags.flash_attn:
        attention = n_ctx * n_ubatch * 2
    else:
        attention = n_ctx * n_ubatch * max(facts.per_layer(facts.headCount, 0), 1) * 4
    n_ff = max(facts.per_layer(facts.feedForwardLength, 0), 0)
    if facts.expertCount and facts.expertUsedCount:
        n_ff = (facts.expertFeedForwardLength or n_ff) * facts.expertUsedCount
    activations = n_ubatch * (4 * n_ff + 2 * facts.embeddingLength) * 4
    return Estimate(
        weights=facts.tensorBytes,
        kv_cache=kv_cache(facts, flags, n_ctx),
        output=output,
        compute=attention + activations,
        overhead=OVERHEAD,
        context=n_ctx,
    )
