"""Reading llama-server's command line for the Ollama catalogue: the value of a flag, the model
file. (Being replaced by the one command-line reader; the rest of the Ollama translation is
split by idea beside it: durations, to_openai, answers, stream, catalogue.)"""

from __future__ import annotations

from collections.abc import Sequence

from halogen.llamaswap.resolve import Runnable


def flag(argv: Sequence[str], *names: str) -> str | None:
    """The last value given to any of `names` (`--flag value` or `--flag=value`)."""
    found = None
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in names:
            if eq:
                found = value
            elif i + 1 < len(argv):
                found = argv[i + 1]
    return found


def model_file(model: Runnable) -> str | None:
    """The GGUF file the command loads (`-m`/`--model`), when it names one."""
    return flag(model.argv, "-m", "--model") or None
