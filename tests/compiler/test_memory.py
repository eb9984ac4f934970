"""The memory estimate (halogen/compiler/memory.py): its terms follow llama.cpp's allocations."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from halogen.compiler import memory
from halogen.llamacpp.gguf_facts import GgufFacts
from tests.compiler.test_facts import SMOL

MiB = 1024 * 1024

# gpt-oss-20b's config.json (huggingface.co/openai/gpt-oss-20b): 24 layers, hidden 2880, 64 heads,
# 8 KV heads, head_dim 64, sliding_window 128 on every other layer, 32 experts, 4 per token.
GPT_OSS_20B = GgufFacts(
    architecture="gpt-oss",
    fileType="MXFP4_MOE",
    parameterCount=20_914_757_184,
    tensorBytes=12_000_000_000,
    contextLength=131072,
    blockCount=24,
    embeddingLength=2880,
    feedForwardLength=2880,
    vocabSize=201088,
    headCount=64,
    headCountKv=8,
    keyLength=64,
    valueLength=64,
    slidingWindow=128,
    slidingWindowLayers=list(range(0, 24, 2)),
    expertCount=32,
    expertUsedCount=4,
    expertFeedForwardLength=2880,
)


def test_kv_cache_is_layers_times_cells_times_kv_heads_times_head_sizes() -> None:
    # llama-server -c 4096 on SmolLM2 logs "llama_kv_cache: size = 90.00 MiB (4096 cells, 30 layers)".
    est = memory.estimate(SMOL, ["-c", "4096"])
    assert est.kv_cache == 4096 * 30 * 3 * (64 + 64) * 2 == 90 * MiB
    assert est.weights == SMOL.tensorBytes
    assert est.output == 49152 * 4 * 4  # "output buffer size = 0.75 MiB": 4 auto slots
    assert est.context == 4096


def test_the_context_is_padded_to_256_and_defaults_to_the_trained_one() -> None:
    assert memory.estimate(SMOL, ["-c", "1000"]).context == 1024
    assert memory.estimate(SMOL, []).context == 8192


def test_quantized_cache_types_shrink_the_cache_by_their_block_size() -> None:
    f16 = memory.estimate(SMOL, ["-c", "4096"]).kv_cache
    q8 = memory.estimate(SMOL, ["-c", "4096", "-ctk", "q8_0", "--cache-type-v=q4_0"]).kv_cache
    assert q8 == int(4096 * 30 * 3 * 64 * (34 / 32 + 18 / 32))
    assert q8 < f16


def test_a_split_cache_gives_each_slot_its_share_and_one_output_row() -> None:
    est = memory.estimate(SMOL, ["-c", "4096", "-np", "2"])
    assert est.kv_cache == 2 * 2048 * 30 * 3 * 128 * 2
    assert est.output == 49152 * 4 * 2


def test_sliding_window_layers_hold_only_the_window_and_a_ubatch() -> None:
    est = memory.estimate(GPT_OSS_20B, ["-c", "32768"])
    full = 32768 * 12 * 8 * 128 * 2
    swa_cells = 1024  # GGML_PAD(min(32768, 128 * 4 slots + 512), 256)
    assert est.kv_cache == full + swa_cells * 12 * 8 * 128 * 2
    whole = memory.estimate(GPT_OSS_20B, ["-c", "32768", "--swa-full"])
    assert whole.kv_cache == 2 * full


def test_moe_activations_scale_with_the_experts_used_not_all_experts() -> None:
    est = memory.estimate(GPT_OSS_20B, ["-c", "4096", "-ub", "256"])
    assert est.compute == 4096 * 256 * 2 + 256 * (4 * 2880 * 4 + 2 * 2880) * 4


def test_without_flash_attention_the_compute_buffer_holds_kq() -> None:
    on = memory.estimate(SMOL, ["-c", "4096"]).compute
    off = memory.estimate(SMOL, ["-c", "4096", "-fa", "off"]).compute
    assert off - on == 4096 * 512 * 9 * 4 - 4096 * 512 * 2


@pytest.mark.real
def test_the_kv_and_weights_terms_equal_what_llama_server_allocates(
    llama_server: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    from halogen.llamacpp.gguf_header import read_facts

    facts = read_facts(smollm2_gguf)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["-c", "3000", "-np", "2", "-ctk", "q8_0", "-t", "1", "-ngl", "0"]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [llama_server, "-m", smollm2_gguf, "--host", "127.0.0.1", "--port", str(port), "-lv", "4", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "compute buffer size" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text(errors="replace")

    def reported(kind: str) -> float:
        found = re.search(rf"{kind} buffer size =\s+([0-9.]+) MiB", text)
        assert found, text[-2000:]
        return float(found.group(1))

    est = memory.estimate(facts, argv)
    assert reported("KV") == pytest.approx(est.kv_cache / MiB, abs=0.01)
    assert reported("model") == pytest.approx(est.weights / MiB, abs=0.01)
    assert reported("output") == pytest.approx(est.output / MiB, abs=0.01)
