"""The reader of llama-server's command line, spelling by spelling.

The spec is `common_params_parse_ex` and the `add_opt(common_arg(...))` table in common/arg.cpp
of ggml-org/llama.cpp@0c1e57098bba43ac29e6e3b677cdceebdd22334f, the llama.cpp the tests build
(llama-cpp-python 0.3.36's vendor/llama.cpp; halogen.llamacpp.llama_flags.LLAMA_CPP_COMMIT):
environment variables (`set_env`) first, the command line over them; '_' read as '-' in a word
that starts with '--'; each word looked up whole (no `--flag=value`); the last of a repeated
flag wins; `--api-key` values are a comma-separated list, appended.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from halogen.llamacpp import cmdline, llama_flags

ROWS: list[tuple[list[str], Mapping[str, str], str, object]] = [
    # argv, env, what is asked, what the reader says
    (["-m", "a.gguf"], {}, "model", "a.gguf"),
    (["--model", "a.gguf"], {}, "model", "a.gguf"),
    (["-m", "first.gguf", "--model", "last.gguf"], {}, "model", "last.gguf"),
    ([], {"LLAMA_ARG_MODEL": "env.gguf"}, "model", "env.gguf"),
    (["-m", "cli.gguf"], {"LLAMA_ARG_MODEL": "env.gguf"}, "model", "cli.gguf"),
    (["--port", "8080"], {}, "model", None),
    (["-c", "4096"], {}, "ctx_size", 4096),
    (["--ctx-size", "4096"], {}, "ctx_size", 4096),
    (["--ctx_size", "1000000"], {}, "ctx_size", 1_000_000),
    (["-c", "1", "--ctx_size", "2"], {}, "ctx_size", 2),
    ([], {"LLAMA_ARG_CTX_SIZE": "8192"}, "ctx_size", 8192),
    (["-c", "512"], {"LLAMA_ARG_CTX_SIZE": "8192"}, "ctx_size", 512),
    (["-np", "4"], {}, "parallel", 4),
    (["--parallel", "2"], {}, "parallel", 2),
    ([], {"LLAMA_ARG_N_PARALLEL": "3"}, "parallel", 3),
    (["-ctk", "q8_0"], {}, "cache_type_k", "q8_0"),
    (["--cache-type-k", "q4_0"], {}, "cache_type_k", "q4_0"),
    (["--cache_type_v", "q8_0"], {}, "cache_type_v", "q8_0"),
    ([], {"LLAMA_ARG_CACHE_TYPE_V": "f16"}, "cache_type_v", "f16"),
    (["--api-key", "a,b"], {}, "api_keys", ("a", "b")),
    (["--api_key", "k"], {}, "api_keys", ("k",)),
    (["--api-key", "a", "--api-key", "b"], {}, "api_keys", ("a", "b")),
    (["--api-key", "cli"], {"LLAMA_API_KEY": "env"}, "api_keys", ("cli", "env")),
    (["--api-key-file", "/k"], {}, "api_key_files", ("/k",)),
    (["--api_key_file", "/k"], {}, "api_key_files", ("/k",)),
    ([], {"LLAMA_ARG_API_KEY_FILE": "/k"}, "api_key_files", ("/k",)),
    (["-hf", "org/repo"], {}, "fetching", ("-hf org/repo",)),
    (["-hfr", "org/repo"], {}, "fetching", ("-hfr org/repo",)),
    (["--hf-repo", "org/repo", "-hff", "x.gguf"], {}, "fetching", ("--hf-repo org/repo", "-hff x.gguf")),
    (["-mu", "https://x/y.gguf"], {}, "fetching", ("-mu https://x/y.gguf",)),
    (["--model-url", "https://x/y.gguf"], {}, "fetching", ("--model-url https://x/y.gguf",)),
    (["-dr", "ai/smollm2"], {}, "fetching", ("-dr ai/smollm2",)),
    (["--models-dir", "/m"], {}, "fetching", ("--models-dir /m",)),
    (["--models_preset", "/p.ini"], {}, "fetching", ("--models_preset /p.ini",)),
    (["-hfd", "org/draft"], {}, "fetching", ("-hfd org/draft",)),
    (["-mmu", "https://x/mm.gguf"], {}, "fetching", ("-mmu https://x/mm.gguf",)),
    ([], {"LLAMA_ARG_HF_REPO": "org/repo"}, "fetching", ("LLAMA_ARG_HF_REPO",)),
    (["-m", "a.gguf", "-np", "2"], {}, "fetching", ()),
    # switches: the negated spelling and LLAMA_ARG_NO_* turn them off
    (["-kvu"], {}, "values", {"--kv-unified": "1"}),
    (["-kvu", "--no-kv-unified"], {}, "values", {"--kv-unified": "0"}),
    ([], {"LLAMA_ARG_NO_KV_UNIFIED": "1"}, "values", {"--kv-unified": "0"}),
    ([], {"LLAMA_ARG_KV_UNIFIED": "true"}, "values", {"--kv-unified": "1"}),
    (["--n_gpu_layers", "99"], {}, "values", {"--n-gpu-layers": "99"}),
]


@pytest.mark.parametrize(
    ("argv", "env", "asked", "expected"),
    ROWS,
    ids=[
        " ".join([*argv, *(f"{k}={v}" for k, v in env.items())]) + f" {asked}" for argv, env, asked, _ in ROWS
    ],
)
def test_each_spelling_reads_as_llama_server_reads_it(
    argv: list[str], env: Mapping[str, str], asked: str, expected: object
) -> None:
    line = cmdline.read(argv, env)
    got = getattr(line, asked)
    assert (dict(got) if asked == "values" else got) == expected
    assert line.refused == ()


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("--model=a.gguf", "--model a.gguf"),
        ("--ctx-size=4096", "--ctx-size 4096"),
        ("--ctx_size=4096", "--ctx_size 4096"),
        ("--api-key=k", "--api-key k"),
    ],
)
def test_the_equals_form_is_refused_as_llama_server_refuses_it(word: str, hint: str) -> None:
    (refused,) = cmdline.read(["--port", "1", word]).refused
    assert refused.index == 2
    assert f"llama-server does not read {word}" in refused.message
    assert refused.hint.endswith(hint)


def test_the_program_is_not_read_as_a_word() -> None:
    assert (
        cmdline.of_command(("/usr/bin/llama-server", "-m", "x.gguf"), (("LLAMA_ARG_CTX_SIZE", "7"),)).ctx_size
        == 7
    )
    assert cmdline.of_command(("llama-server", "-m", "x.gguf")).model == "x.gguf"


def test_the_commit_cited_here_is_the_one_the_table_was_generated_from() -> None:
    assert llama_flags.LLAMA_CPP_COMMIT in (__doc__ or "")
    assert cmdline.LLAMA_CPP == llama_flags.LLAMA_CPP_COMMIT


def test_every_fetching_flag_is_a_llama_server_flag_of_the_table() -> None:
    assert {cmdline.KNOWN[name].name for name in cmdline.FETCHING} == cmdline.FETCHING
    assert all(cmdline.KNOWN[name].server for name in cmdline.FETCHING)


def test_a_key_file_gives_its_first_key_line() -> None:
    assert cmdline.first_key("# comment\n\nsk-one\nsk-two\n") == "sk-one"
    assert cmdline.first_key("# only a comment\n") is None
