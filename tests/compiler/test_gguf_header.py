"""`halogen lock`'s GGUF reader on hostile headers: every one ends soon, small, with an error that
names the byte and the field; and on valid ones it reads what gguf-py reads."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gguf as gguf_py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halogen.compiler import memory
from halogen.compiler.site.lock import Lock, LockedFile, dumps, read_lock
from halogen.llamacpp.gguf_facts import GgufFacts
from halogen.llamacpp.gguf_header import MAX_ARRAY, Truncated, Unreadable, read_facts
from tests import gguf_corpus as corpus
from tests.compiler.conftest import MODEL, SITE, SiteTree

SECONDS = 2
PEAK = 200 * 1024 * 1024


@contextmanager
def bounded(seconds: float = SECONDS, peak: int = PEAK) -> Iterator[None]:
    """Fail past `seconds` (a hang included) or past `peak` bytes allocated."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    tracemalloc.start()
    try:
        yield
        assert tracemalloc.get_traced_memory()[1] <= peak
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_each_crafted_header_and_every_cut_of_a_valid_one_ends_within_2_s_and_200_mb(tmp_path: Path) -> None:
    results = corpus.measure(corpus.cases(tmp_path))
    over = [r for r in results if not r.within_bounds]
    assert not over, over
    outcome = {r.name: r.outcome for r in results}
    assert outcome["uint8 array claiming 2^40 elements, no data"].endswith(
        f"x.blob: an array of {1 << 40} elements, over the {MAX_ARRAY} halogen reads"
    )
    assert (
        "gemma3.block_count: 1000000000 layers, over the 512"
        in outcome["block_count 1e9 with a sliding window"]
    )
    assert "gemma3.block_count: 1000000000000 layers" in outcome["block_count 1e12"]
    assert "x.blob: an array of 4000000 elements" in outcome["a real array of 4 M elements"]
    assert outcome["2 M empty strings"] == "read"  # under the bounds: stepped over, not built
    assert outcome["head_count_kv [1, 2] with block_count 4"].startswith(
        "at byte 102, llama.attention.head_count_kv: 2 values for the 4 layers of llama.block_count"
    )
    cuts = [r for r in results if r.name.startswith("small cut")]
    assert len(cuts) > 100
    for r in cuts:
        whole = r.name.endswith("(the header's end)")
        assert (r.outcome == "read") if whole else ("more bytes, and the file ends at byte" in r.outcome), r


def test_a_file_cut_after_its_header_reads_as_the_whole_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.gguf"
    whole.write_bytes(corpus.small())
    _, end = corpus.boundaries(whole)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(corpus.small()[:end])
    assert read_facts(cut) == read_facts(whole)
    cut.write_bytes(corpus.small()[: end - 1])
    with pytest.raises(Truncated) as caught:
        read_facts(cut)
    assert caught.value.offset == end - 8  # the last tensor's data offset: where the missing bytes start


def test_the_small_header_reads_as_llama_cpp_states_it(tmp_path: Path) -> None:
    path = tmp_path / "small.gguf"
    path.write_bytes(corpus.small())
    facts = read_facts(path)
    assert (facts.architecture, facts.name, facts.fileType) == ("llama", "tiny", "F32")
    assert (facts.blockCount, facts.feedForwardLength, facts.headCount, facts.headCountKv) == (
        2,
        [16, 32],
        2,
        1,
    )
    assert (facts.vocabSize, facts.keyLength, facts.parameterCount, facts.tensorBytes) == (4, 4, 40, 160)
    assert facts.info["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert facts.info["llama.use_parallel_residual"] is True
    assert "tokenizer.ggml.tokens" not in facts.info  # a vocabulary is counted, not kept


KINDS = {
    corpus.U8: st.integers(0, 2**8 - 1),
    corpus.I8: st.integers(-(2**7), 2**7 - 1),
    corpus.U16: st.integers(0, 2**16 - 1),
    corpus.I16: st.integers(-(2**15), 2**15 - 1),
    corpus.U32: st.integers(0, 2**32 - 1),
    corpus.I32: st.integers(-(2**31), 2**31 - 1),
    corpus.F32: st.floats(width=32, allow_nan=False),
    corpus.BOOL: st.booleans(),
    corpus.U64: st.integers(0, 2**64 - 1),
    corpus.I64: st.integers(-(2**63), 2**63 - 1),
    corpus.F64: st.floats(allow_nan=False),
    corpus.STR: st.text(max_size=40),
}


@st.composite
def values(draw: st.DrawFn) -> tuple[int, object]:
    kind = draw(st.sampled_from([*KINDS, corpus.ARR]))
    if kind != corpus.ARR:
        return kind, draw(KINDS[kind])
    item = draw(st.sampled_from(list(KINDS)))
    return kind, (item, draw(st.lists(KINDS[item], max_size=20)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.dictionaries(st.from_regex(r"general\.[a-z_.]{1,30}", fullmatch=True), values(), max_size=12))
def test_generated_headers_read_the_values_gguf_py_reads(
    keys: dict[str, tuple[int, object]], tmp_path: Path
) -> None:
    keys.pop("general.architecture", None)
    keys.pop("general.alignment", None)
    path = tmp_path / "generated.gguf"
    path.write_bytes(corpus.gguf([corpus.arch(), *(corpus.kv(k, *v) for k, v in keys.items())]))
    with bounded():
        facts = read_facts(path)
    reader = gguf_py.GGUFReader(path)
    for key, (kind, _) in keys.items():
        field = reader.fields[key]
        expected = field.contents()
        item = field.types[-1]
        if item == gguf_py.GGUFValueType.FLOAT32:
            expected = (
                [float(str(np.float32(v))) for v in expected]
                if kind == corpus.ARR
                else float(str(np.float32(expected)))
            )
        if kind == corpus.ARR and item == gguf_py.GGUFValueType.STRING:
            assert key not in facts.info
        else:
            assert facts.info[key] == expected, key


def _mutate(data: bytes, cuts: list[int], draw: st.DrawFn) -> bytes:
    at = draw(st.sampled_from(cuts) | st.integers(0, len(data)))
    how = draw(st.sampled_from(["u64", "u32", "byte", "cut", "insert"]))
    if how == "u64":
        value = draw(
            st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)
        )
        return data[:at] + struct.pack("<Q", value) + data[at + 8 :]
    if how == "u32":
        return data[:at] + struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + data[at + 4 :]
    if how == "byte":
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if how == "cut":
        return data[:at]
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


SMALL = corpus.small()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_of_a_valid_header_ends_within_2_s_and_200_mb_as_facts_or_a_positioned_error(
    data: st.DataObject, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.gguf"
    whole.write_bytes(SMALL)
    cuts, _ = corpus.boundaries(whole)
    mutated = SMALL
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate(mutated, cuts, data.draw)
    path = tmp_path / "mutated.gguf"
    path.write_bytes(mutated)
    with bounded():
        try:
            facts = read_facts(path)
        except Unreadable as exc:
            assert str(exc).startswith(f"at byte {exc.offset}, {exc.field}: ")
            assert 0 <= exc.offset <= len(mutated)
            return
        memory.estimate(facts, ["-c", "4096"])


def test_the_kv_cache_estimate_does_not_walk_the_layers() -> None:
    facts = GgufFacts.model_construct(
        architecture="x",
        fileType="F16",
        parameterCount=0,
        tensorBytes=0,
        contextLength=4096,
        blockCount=10**12,
        embeddingLength=64,
        feedForwardLength=0,
        vocabSize=0,
        headCount=4,
        headCountKv=2,
        keyLength=16,
        valueLength=16,
        slidingWindow=512,
        slidingWindowLayers=[0, 2],
        expertCount=0,
        expertUsedCount=0,
        expertFeedForwardLength=0,
    )
    with bounded(seconds=1):
        kv = memory.kv_cache(facts, memory.Flags(), 4096)
    # two sliding layers at 512 * 4 + 512 cells padded, the rest at 4096; 2 heads of 16 + 16 f16
    assert kv == (2 * 2560 + (10**12 - 2) * 4096) * 2 * (16 * 2 + 16 * 2)


HALOGEN = Path(sys.executable).with_name("halogen")


def _site(tree: Callable[..., SiteTree], models: Path) -> SiteTree:
    site = {
        **SITE,
        "deployment": {**SITE["deployment"], "models": {"hostPath": str(models), "mountPath": "/models"}},
    }  # type: ignore[dict-item]
    return tree(site=site, models={"tiny": {**MODEL, "file": "tiny.gguf"}})


@pytest.mark.parametrize(
    ("case", "where"),
    [
        (
            "uint8 array claiming 2^40 elements, no data",
            "at byte 124, x.blob: an array of 1099511627776 elements",
        ),
        ("block_count 1e12", "at byte 70, gemma3.block_count: 1000000000000 layers, over the 512"),
        ("head_count_kv [1, 2] with block_count 4", "at byte 102, llama.attention.head_count_kv: 2 values"),
    ],
)
def test_lock_refuses_a_crafted_header_naming_the_file_the_byte_and_the_field(
    case: str, where: str, tree: Callable[..., SiteTree], tmp_path: Path
) -> None:

    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(corpus.crafted()[case])
    site = _site(tree, models)
    # `lock` finds no site upward yet (its site discovery is another change): `--src .` from inside.
    result = subprocess.run(
        [HALOGEN, "lock", "--src", "."], cwd=site.root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert f"models.d/tiny.yaml:2:1: file: {models / 'tiny.gguf'} is not a readable GGUF file: {where}" in (
        result.stderr
    )
    assert "download it again" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (site.root / "halogen.lock").exists()


def _locked_site(tree: Callable[..., SiteTree], tmp_path: Path, edit: Callable[[str], str]) -> SiteTree:
    """A site whose one model's file is the small header, locked, then the lock edited by hand."""
    path = tmp_path / "small.gguf"
    path.write_bytes(corpus.small())
    site = _site(tree, tmp_path)
    text = dumps(Lock({"tiny.gguf": LockedFile(path.stat().st_size, "0" * 64, read_facts(path))})).decode()
    (site.root / "halogen.lock").write_text(edit(text))
    return site


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace("blockCount: 2\n", "blockCount: 1000000000000\n"),
            "halogen.lock:14:7: files.tiny.gguf.gguf.blockCount: input should be less than or equal to 512",
        ),
        (
            lambda t: t.replace("blockCount: 2\n", "blockCount: 4\n").replace(
                "headCountKv: 1\n", "headCountKv: [1, 2]\n"
            ),
            "halogen.lock:21:7: files.tiny.gguf.gguf.headCountKv: 2 values for 4 layers (blockCount)",
        ),
        (
            lambda t: t.replace("slidingWindowLayers: []", "slidingWindowLayers: [0, 7]"),
            "files.tiny.gguf.gguf.slidingWindowLayers: layer 7 is past the 2 layers (blockCount)",
        ),
    ],
)
@pytest.mark.parametrize("command", [("validate",), ("build", "--check")])
def test_a_hand_edited_lock_past_the_bounds_is_an_error_at_its_position(
    edit: Callable[[str], str],
    expected: str,
    command: tuple[str, ...],
    tree: Callable[..., SiteTree],
    tmp_path: Path,
) -> None:
    site = _locked_site(tree, tmp_path, edit)
    result = subprocess.run([HALOGEN, *command], cwd=site.root, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_the_unedited_lock_of_the_small_header_validates(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    site = _locked_site(tree, tmp_path, lambda t: t)
    result = subprocess.run([HALOGEN, "validate"], cwd=site.root, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_a_header_full_of_values_halogen_keeps_still_gives_a_small_lock_that_reads_back(
    tmp_path: Path,
) -> None:
    keys = [corpus.kv(f"general.s{i}", corpus.STR, "x" * 1024) for i in range(500)]
    keys += [corpus.kv(f"general.a{i}", corpus.ARR, (corpus.U32, list(range(64)))) for i in range(500)]
    path = tmp_path / "full.gguf"
    path.write_bytes(corpus.gguf([corpus.arch(), *keys]))
    with bounded():
        facts = read_facts(path)
    data = dumps(Lock({"full.gguf": LockedFile(1, "0" * 64, facts)}))
    assert len(data) < 128 * 1024  # many models' entries fit in the 1 MiB halogen reads back
    (tmp_path / "halogen.lock").write_bytes(data)
    assert read_lock(tmp_path / "halogen.lock").facts("full.gguf") == facts
    assert facts.info["general.s0"] == "x" * 1024 and facts.info["general.a0"] == list(range(64))
