"""Synthetic GGUF files with the shapes of real large models, as sparse files: a real header
written with the `gguf` package's writer (key/values and tensor infos as llama.cpp's converter
writes them), then the file extended to its full size without writing the data. `halogen lock`'s
reader reads them like the real files; the weights are zeros. NOT the real models: each shape
below comes from the model's config.json on Hugging Face, cited, and the tensor types from the
quantization the seed site names; file sizes come out within a few percent of the real files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from halogen.compiler.site.lock import Lock, LockedFile
from halogen.llamacpp.gguf_header import read_facts

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class Shape:
    arch: str
    name: str
    file_type: gguf.LlamaFileType
    weight: Q  # the type of 2-D weights
    layers: int
    embd: int
    ff: int
    heads: int
    kv_heads: int
    vocab: int
    context: int
    tied: bool = False
    head_dim: int = 0  # 0: embd / heads
    experts: int = 0
    experts_used: int = 0
    expert_ff: int = 0
    expert_weight: Q = Q.Q8_0
    sliding_window: int = 0
    extra: dict[str, int] = field(default_factory=dict)  # further <arch>.* keys


# Qwen/Qwen2.5-Coder-3B-Instruct config.json: hidden_size 2048, intermediate_size 11008,
# num_hidden_layers 36, num_attention_heads 16, num_key_value_heads 2, vocab_size 151936,
# max_position_embeddings 32768, tie_word_embeddings true.
QWEN25_3B = Shape("qwen2", "Qwen2.5 Coder 3B Instruct (synthetic)", gguf.LlamaFileType.MOSTLY_Q4_K_M, Q.Q4_K,
                  36, 2048, 11008, 16, 2, 151936, 32768, tied=True)  # fmt: skip
# Qwen/Qwen2.5-Coder-7B-Instruct config.json: hidden_size 3584, intermediate_size 18944,
# num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, vocab_size 152064.
QWEN25_7B = Shape("qwen2", "Qwen2.5 Coder 7B Instruct (synthetic)", gguf.LlamaFileType.MOSTLY_Q5_K_M, Q.Q5_K,
                  28, 3584, 18944, 28, 4, 152064, 32768)  # fmt: skip
# Qwen/Qwen2.5-Coder-32B-Instruct config.json: hidden_size 5120, intermediate_size 27648,
# num_hidden_layers 64, num_attention_heads 40, num_key_value_heads 8, vocab_size 152064.
QWEN25_32B = Shape("qwen2", "Qwen2.5 Coder 32B Instruct (synthetic)", gguf.LlamaFileType.MOSTLY_Q5_K_M, Q.Q5_K,
                   64, 5120, 27648, 40, 8, 152064, 32768)  # fmt: skip
# deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct config.json: hidden_size 2048, num_hidden_layers 27,
# num_attention_heads 16, qk_nope_head_dim 128 + qk_rope_head_dim 64 = 192 (key), v_head_dim 128,
# kv_lora_rank 512, n_routed_experts 64, n_shared_experts 2, num_experts_per_tok 6,
# moe_intermediate_size 1408, first_k_dense_replace 1, intermediate_size 10944,
# vocab_size 102400, max_position_embeddings 163840. Written as the 2024 GGUFs are (no MLA keys:
# 16 KV heads of 192/128).
DEEPSEEK_V2_LITE = Shape("deepseek2", "DeepSeek Coder V2 Lite Instruct (synthetic)", gguf.LlamaFileType.MOSTLY_Q4_K_M,
                         Q.Q4_K, 27, 2048, 10944, 16, 16, 102400, 163840, experts=64, experts_used=6,
                         expert_ff=1408, expert_weight=Q.Q4_K,
                         extra={"attention.key_length": 192, "attention.value_length": 128,
                                "attention.kv_lora_rank": 512, "rope.dimension_count": 64})  # fmt: skip
# openai/gpt-oss-20b config.json: hidden_size 2880, num_hidden_layers 24, num_attention_heads 64,
# num_key_value_heads 8, head_dim 64, num_local_experts 32, num_experts_per_tok 4,
# intermediate_size 2880, sliding_window 128 (layer_types: sliding and full alternate),
# vocab_size 201088, max_position_embeddings 131072. Experts MXFP4, as OpenAI ships them.
GPT_OSS_20B = Shape("gpt-oss", "gpt-oss 20b (synthetic)", gguf.LlamaFileType.MOSTLY_MXFP4_MOE, Q.Q8_0,
                    24, 2880, 2880, 64, 8, 201088, 131072, head_dim=64, experts=32, experts_used=4,
                    expert_ff=2880, expert_weight=Q.MXFP4, sliding_window=128)  # fmt: skip
# openai/gpt-oss-120b config.json: as 20b but num_hidden_layers 36, num_local_experts 128.
GPT_OSS_120B = Shape("gpt-oss", "gpt-oss 120b (synthetic)", gguf.LlamaFileType.MOSTLY_MXFP4_MOE, Q.Q8_0,
                     36, 2880, 2880, 64, 8, 201088, 131072, head_dim=64, experts=128, experts_used=4,
                     expert_ff=2880, expert_weight=Q.MXFP4, sliding_window=128)  # fmt: skip
# Qwen/Qwen3-235B-A22B config.json: hidden_size 4096, num_hidden_layers 94, num_attention_heads 64,
# num_key_value_heads 4, head_dim 128, num_experts 128, num_experts_per_tok 8,
# moe_intermediate_size 1536 (every layer MoE), intermediate_size 12288, vocab_size 151936,
# max_position_embeddings 40960. At Q4_K_M: a file of about 132 GiB, too big for one 128 GB box.
QWEN3_235B = Shape("qwen3moe", "Qwen3 235B A22B (synthetic)", gguf.LlamaFileType.MOSTLY_Q4_K_M, Q.Q4_K,
                   94, 4096, 12288, 64, 4, 151936, 40960, head_dim=128, experts=128, experts_used=8,
                   expert_ff=1536, expert_weight=Q.Q4_K)  # fmt: skip


def _tensors(s: Shape) -> list[tuple[str, tuple[int, ...], Q]]:
    head = s.head_dim or s.embd // s.heads
    key = s.extra.get("attention.key_length", head)
    value = s.extra.get("attention.value_length", head)
    out: list[tuple[str, tuple[int, ...], Q]] = [("token_embd.weight", (s.vocab, s.embd), s.weight)]
    for i in range(s.layers):
        b = f"blk.{i}"
        out += [
            (f"{b}.attn_norm.weight", (s.embd,), Q.F32),
            (f"{b}.attn_q.weight", (s.heads * key, s.embd), s.weight),
            (f"{b}.attn_k.weight", (s.kv_heads * key, s.embd), s.weight),
            (f"{b}.attn_v.weight", (s.kv_heads * value, s.embd), s.weight),
            (f"{b}.attn_output.weight", (s.embd, s.heads * value), s.weight),
            (f"{b}.ffn_norm.weight", (s.embd,), Q.F32),
        ]
        if s.experts and not (s.arch == "deepseek2" and i == 0):  # first_k_dense_replace: 1
            out += [
                (f"{b}.ffn_gate_inp.weight", (s.experts, s.embd), Q.F32),
                (f"{b}.ffn_gate_exps.weight", (s.experts, s.expert_ff, s.embd), s.expert_weight),
                (f"{b}.ffn_up_exps.weight", (s.experts, s.expert_ff, s.embd), s.expert_weight),
                (f"{b}.ffn_down_exps.weight", (s.experts, s.embd, s.expert_ff), s.expert_weight),
            ]
            if s.arch == "deepseek2":  # n_shared_experts 2 * moe_intermediate_size 1408
                out += [
                    (f"{b}.ffn_gate_shexp.weight", (2 * s.expert_ff, s.embd), s.weight),
                    (f"{b}.ffn_up_shexp.weight", (2 * s.expert_ff, s.embd), s.weight),
                    (f"{b}.ffn_down_shexp.weight", (s.embd, 2 * s.expert_ff), s.weight),
                ]
        else:
            out += [
                (f"{b}.ffn_gate.weight", (s.ff, s.embd), s.weight),
                (f"{b}.ffn_up.weight", (s.ff, s.embd), s.weight),
                (f"{b}.ffn_down.weight", (s.embd, s.ff), s.weight),
            ]
    out.append(("output_norm.weight", (s.embd,), Q.F32))
    if not s.tied:
        out.append(("output.weight", (s.vocab, s.embd), s.weight))
    return out


def write_sparse(path: Path, s: Shape, *, parts: int = 1, vocabulary: bool = False) -> Path:
    """Write `s` as a GGUF whose tensor data is a hole; returns `path`. With `parts`, as
    llama.cpp's gguf-split writes it: `<stem>-00001-of-0000N.gguf` and so on beside `path`, the
    key/values in the first part (returned). With `vocabulary`, the header holds a tokenizer of
    `s.vocab` tokens, as the real files' do (megabytes of header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(s)
    writer = gguf.GGUFWriter(path, s.arch, split_max_tensors=-(-len(tensors) // parts) if parts > 1 else 0)
    writer.add_name(s.name)
    writer.add_file_type(s.file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_block_count(s.layers)
    writer.add_context_length(s.context)
    writer.add_embedding_length(s.embd)
    writer.add_feed_forward_length(s.ff)
    writer.add_head_count(s.heads)
    writer.add_head_count_kv(s.kv_heads)
    writer.add_vocab_size(s.vocab)
    if s.head_dim:
        writer.add_key_length(s.head_dim)
        writer.add_value_length(s.head_dim)
    if s.experts:
        writer.add_expert_count(s.experts)
        writer.add_expert_used_count(s.experts_used)
        writer.add_expert_feed_forward_length(s.expert_ff)
    if s.sliding_window:
        writer.add_sliding_window(s.sliding_window)
    for key, value in s.extra.items():
        writer.add_uint32(f"{s.arch}.{key}", value)
    if vocabulary:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"token{i}" for i in range(s.vocab)])
        writer.add_token_types([1] * s.vocab)
    for name, shape, qtype in tensors:
        if shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            qtype = Q.Q5_0  # llama.cpp's fallback for rows a k-quant block does not divide
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * size
        writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    files = writer.format_shard_names(path)
    for file, infos in zip(files, writer.tensors, strict=True):
        total = sum(t.nbytes + (-t.nbytes % 32) for t in infos.values())  # GGUF_DEFAULT_ALIGNMENT
        with file.open("r+b") as fh:
            end = fh.seek(0, 2)
            fh.truncate(end + (-end % 32) + total)  # the data starts aligned after the header
    return files[0]


# The seed's five models (models.d/), by id: the synthetic shape standing in for each file, the
# file's path under the models mount, and the contextSize the seed gives it.
SEED: dict[str, tuple[Shape, str, int]] = {
    "qwen2.5-coder-3b-instruct-q4_k_m": (
        QWEN25_3B,
        "Qwen/Qwen2.5-Coder-3B-Instruct-GGUF/qwen2.5-coder-3b-instruct-q4_k_m.gguf",
        32768,
    ),
    "qwen2.5-coder-7b-instruct-q5_k_m": (
        QWEN25_7B,
        "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q5_k_m.gguf",
        32768,
    ),
    "qwen2.5-coder-32b-instruct-q5_k_m": (
        QWEN25_32B,
        "Qwen/Qwen2.5-Coder-32B-Instruct-GGUF/qwen2.5-coder-32b-instruct-q5_k_m.gguf",
        32768,
    ),
    "deepseek-coder-v2-lite-instruct-q4_k_m": (
        DEEPSEEK_V2_LITE,
        "bartowski/DeepSeek-Coder-V2-Lite-Instruct-GGUF/DeepSeek-Coder-V2-Lite-Instruct-Q4_K_M.gguf",
        16384,
    ),
    "gpt-oss-20b-q8_k_xl": (GPT_OSS_20B, "unsloth/gpt-oss-20b-GGUF/gpt-oss-20b-UD-Q8_K_XL.gguf", 102400),
}
# Not in the seed: what a site that adds the 120b sees.
GPT_OSS_120B_MODEL = (
    "gpt-oss-120b",
    (GPT_OSS_120B, "unsloth/gpt-oss-120b-GGUF/gpt-oss-120b-F16.gguf", 131072),
)

# Not in the seed either: a model too big for either of two 128 GB boxes (the nodes example).
QWEN3_235B_MODEL = (
    "qwen3-235b-a22b-q4_k_m",
    (QWEN3_235B, "unsloth/Qwen3-235B-A22B-GGUF/Qwen3-235B-A22B-Q4_K_M.gguf", 32768),
)


def write_models(folder: Path, models: dict[str, tuple[Shape, str, int]]) -> dict[str, Path]:
    """The sparse files of `models` under `folder` (the models mount)."""
    return {mid: write_sparse(folder / rel, shape) for mid, (shape, rel, _) in models.items()}


def sparse_lock(paths: dict[str, Path], folder: Path) -> Lock:
    """The lock `halogen lock` would write for sparse files, facts read by the same reader; the
    sha256 is that of the first MiB only (hashing tens of GB of holes proves nothing in a test)."""
    files = {}
    for path in paths.values():
        with path.open("rb") as fh:
            digest = hashlib.sha256(fh.read(1 << 20)).hexdigest()
        files[str(path.relative_to(folder))] = LockedFile(path.stat().st_size, digest, read_facts(path))
    return Lock(files)


def fitted_site(tmp: Path, models: dict[str, tuple[Shape, str, int]], budget: str = "120Gi") -> Path:
    """The shipped site's halogen.yaml with a memory budget and no groups, a model file per
    entry of `models` and a lock of their sparse files: a site the compiler fits. Its root."""
    import yaml

    from halogen.compiler.site.lock import write_lock

    paths = write_models(tmp / "models", models)
    root = tmp / "site"
    (root / "models.d").mkdir(parents=True)
    site = yaml.safe_load((Path(__file__).resolve().parents[1] / "halogen.yaml").read_text())
    site.pop("groups")
    site["memoryBudget"] = budget
    site["deployment"]["resources"]["limits"]["memory"] = "128Gi"
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    for model_id, (_, rel, ctx) in models.items():
        (root / "models.d" / f"{model_id}.yaml").write_text(
            f"file: {rel}\nbackend: cpu\ncontextSize: {ctx}\n"
        )
    write_lock(root / "halogen.lock", sparse_lock(paths, tmp / "models"))
    return root
