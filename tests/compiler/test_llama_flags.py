"""llama-server's flags: the table generated from the pinned llama.cpp's common/arg.cpp, and the
build refusing what that llama-server would refuse at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from halogen.compiler.site import flags
from halogen.llamacpp import argcpp, llama_flags

from .conftest import MODEL, REPO, SITE, SiteTree

HALOGEN = Path(sys.executable).parent / "halogen"


def _pinned_sdist() -> Path:
    version = re.search(
        r"LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)", (REPO / "scripts/fetch-llama-server").read_text()
    )
    assert version is not None
    cache = os.environ.get("HALOGEN_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "halogen"
    )
    return Path(cache) / f"llama_cpp_python-{version[1]}.tar.gz"


def test_the_committed_flag_table_is_what_the_pinned_llama_cpp_arg_cpp_gives() -> None:
    sdist = _pinned_sdist()
    if not sdist.is_file():
        pytest.skip(
            f"{sdist} is not cached: scripts/fetch-llama-server (or scripts/gen-llama-flags) keeps it"
        )
    source = argcpp.read_source(sdist)
    assert source.commit == llama_flags.LLAMA_CPP_COMMIT
    assert argcpp.render(source) == (REPO / "halogen/llamacpp/llama_flags.py").read_text(), (
        "halogen/llamacpp/llama_flags.py is stale: run scripts/gen-llama-flags and commit it"
    )


# Written for this test in the shape of llama.cpp's arg.cpp (not taken from it).
ARG_CPP = r"""
static std::initializer_list<enum llama_example> vision = { LLAMA_EXAMPLE_MTMD, LLAMA_EXAMPLE_SERVER };
void f() {
    add_opt(common_arg(
        {"-x", "--extra"}, "N",
        string_format("a value, (default: %d)", 1),
        [](common_params & params, int value) { params.x = value; }
    ).set_env("LLAMA_ARG_EXTRA"));
    add_opt(common_arg(
        {"--on"}, {"--no-on"},
        "a toggle, with a brace in its help: {",
        [](common_params & params, bool value) { params.on = value; }
    ).set_examples({LLAMA_EXAMPLE_SERVER, LLAMA_EXAMPLE_CLI}));
    // add_opt(common_arg({"--gone"}, "commented out", [](common_params &) {}));
    add_opt(common_arg(
        {"--pair"}, "A", "B", "two values",
        [](common_params & params, const std::string & a, const std::string & b) {}
    ).set_examples(vision).set_excludes({LLAMA_EXAMPLE_CLI}));
    add_opt(common_arg({"--bare"}, "no value", [](common_params &) {}));
}
"""


def test_the_generator_reads_spellings_values_programs_and_env_from_each_add_opt_call() -> None:
    assert argcpp.options(ARG_CPP) == [
        argcpp.Option(("-x", "--extra"), (), 1, ("COMMON",), (), "LLAMA_ARG_EXTRA"),
        argcpp.Option(("--on",), ("--no-on",), 0, ("SERVER", "CLI"), (), None),
        argcpp.Option(("--pair",), (), 2, ("MTMD", "SERVER"), ("CLI",), None),
        argcpp.Option(("--bare",), (), 0, ("COMMON",), (), None),
    ]


def test_the_table_knows_every_spelling_the_hand_list_had() -> None:
    for short, long in {
        "-ngl": "--n-gpu-layers",
        "-fa": "--flash-attn",
        "--embedding": "--embeddings",
    }.items():
        assert flags.canonical(short) == long
    assert flags.KNOWN["--ctx-size"].env == "LLAMA_ARG_CTX_SIZE"


@pytest.mark.parametrize(
    ("args", "at", "message", "hint"),
    [
        (["--no-mmap"], 0, "--no-mmap was removed from llama-server", "use --load-mode none"),
        (
            ["--n-gpu-layer", "9"],
            0,
            "--n-gpu-layer is not a llama-server flag",
            "did you mean '--n-gpu-layers'?",
        ),
        (["--threads=4"], 0, "llama-server does not read --threads=4", "two items: --threads, '4'"),
        (["--jinja", "1"], 1, "'1' is not a flag", "--jinja takes no value"),
        (["--color", "on"], 0, "--color is not a llama-server flag", "other llama.cpp programs"),
        (["--threads"], 0, "--threads expects 1 value", "next item"),
    ],
)
def test_what_llama_server_refuses_at_start_is_refused_with_what_to_write(
    args: list[str], at: int, message: str, hint: str
) -> None:
    [(index, said, told)] = flags.refused(args)
    assert index == at
    assert message in said and hint in told, (said, told)


def test_a_value_that_starts_with_a_dash_or_holds_a_macro_is_not_mistaken_for_a_flag() -> None:
    assert flags.refused(["-np", "-1", "--override-kv", "a=int:1", "${gpu}", "--flash_attn", "on"]) == []
    assert flags.parse(["--tensor-split", "-1"])[0].value == "-1"


def test_halogen_validate_refuses_a_removed_flag_in_a_backend_from_a_sub_folder_of_the_site(
    tree: Callable[..., SiteTree],
) -> None:
    backends = {"cpu": {"args": ["--threads", "2", "--no-mmap"]}}
    t = tree(site={**SITE, "backends": backends}, models={"tiny": MODEL})
    result = subprocess.run(
        [str(HALOGEN), "validate"], cwd=t.root / "models.d", capture_output=True, text=True
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "halogen.yaml:" in result.stderr and "backends.cpu.args[2]: --no-mmap was removed" in result.stderr
    assert "use --load-mode none" in result.stderr and "Traceback" not in result.stderr


def test_halogen_build_refuses_a_misspelt_flag_in_a_model_with_a_did_you_mean(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(models={"tiny": {**MODEL, "args": ["--flash-atn", "on"]}})
    result = subprocess.run([str(HALOGEN), "build"], cwd=t.root, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        r"models\.d/tiny\.yaml:\d+:\d+: args\[0\]: --flash-atn is not a llama-server flag", result.stderr
    )
    assert "did you mean '--flash-attn'?" in result.stderr
    assert not t.out.exists()


def test_a_backend_that_runs_another_server_keeps_its_own_flags(tree: Callable[..., SiteTree]) -> None:
    whisper = {
        "binary": "/usr/local/bin/whisper-server",
        "args": ["--inference-path", "/v1/audio/transcriptions"],
    }
    # base custom: the image check would want llama-server where a toolbox has it.
    deployment = {**SITE["deployment"], "image": {"tag": "1.2.3", "base": "custom"}}  # type: ignore[dict-item]
    t = tree(
        site={**SITE, "deployment": deployment, "backends": {"whisper": whisper}},
        models={"tiny": {**MODEL, "args": ["--no-gpu"]}},
    )
    result = subprocess.run([str(HALOGEN), "validate"], cwd=t.root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _help_spellings(text: str) -> set[str]:
    """The spellings `llama-server --help` lists: each option's line starts with them, comma
    separated, then its value hint and, two spaces on, its description."""
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("-") and not line.startswith("-----"):
            head = re.split(r"\s{2,}", re.sub(r",\s+", ", ", line), maxsplit=1)[0]
            found |= {word.rstrip(",") for word in head.split() if word.startswith("-")}
    return found


@pytest.mark.real
def test_the_flags_the_table_gives_llama_server_are_the_ones_the_built_binary_lists(
    llama_server: Path,
) -> None:
    version = subprocess.run([str(llama_server), "--version"], capture_output=True, text=True, timeout=60)
    assert f"commit {llama_flags.LLAMA_CPP_COMMIT[:7]}" in version.stdout + version.stderr
    listed = subprocess.run([str(llama_server), "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert _help_spellings(listed.stdout) == {s for s, spec in flags.KNOWN.items() if spec.server}
