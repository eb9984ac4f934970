"""A corpus of bad input, run through the real CLI one case at a time.

Each case breaks a copy of a site that built, runs `halogen build` and (unless the rule is a
manifest check, or the site file itself is gone) `halogen validate` on it with memory and time
bounded, and expects what a user relies on: exit 1, one diagnostic naming the problem at the
file (and line:column, where the input has one) that holds it, no traceback, and `out/` exactly
as it was, bytes and mtimes.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import halogen

MEMORY_LIMIT = 1 << 30  # bytes of address space per halogen process
TIME_LIMIT = 30  # seconds per halogen process

SITE = """\
deployment:
  name: llm
  namespace: ai
  image:
    tag: "1.2.3"
  models:
    hostPath: /srv/models
    mountPath: /models
  resources:
    limits:
      memory: 8Gi
llamaSwap:
  healthCheckTimeout: 60
groups:
  main: {}
backends:
  cpu:
    args: [--threads, "2", -ngl, "0"]
    env:
      HIP_VISIBLE_DEVICES: "-1"
"""
TINY = """\
name: Tiny
file: tiny/tiny.gguf
group: main
contextSize: 2048
"""
SMALL = TINY.replace("Tiny", "Small").replace("tiny/tiny.gguf", "small.gguf")
NEXT = TINY.count("\n") + 1  # the line a key appended to TINY is on
SITE_NEXT = SITE.count("\n") + 1  # the same for SITE


def model(text: str | bytes, model_id: str = "tiny") -> Callable[[Path], object]:
    def write(root: Path) -> None:
        path = root / "models.d" / f"{model_id}.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return write


def site(text: str) -> Callable[[Path], object]:
    return lambda root: (root / "halogen.yaml").write_text(text)


def both(*steps: Callable[[Path], object]) -> Callable[[Path], object]:
    def run(root: Path) -> None:
        for step in steps:
            step(root)

    return run


def edit_site(old: str, new: str) -> Callable[[Path], object]:
    assert old in SITE, old
    return site(SITE.replace(old, new, 1))


def edit_model(old: str, new: str) -> Callable[[Path], object]:
    assert old in TINY, old
    return model(TINY.replace(old, new, 1))


def symlink(name: str, target: str) -> Callable[[Path], object]:
    return lambda root: (root / "models.d" / name).symlink_to(target)


def replace_site_file(make: Callable[[Path], object]) -> Callable[[Path], object]:
    def run(root: Path) -> None:
        (root / "halogen.yaml").unlink()
        make(root / "halogen.yaml")

    return run


def remove_models(root: Path) -> None:
    for path in (root / "models.d").iterdir():
        path.unlink()


def outside_file(root: Path) -> None:
    (root / "elsewhere.yaml").write_text(TINY)
    (root / "models.d" / "x.yaml").symlink_to("../elsewhere.yaml")


def laughs(levels: int = 7) -> str:
    """Billion laughs: each level lists the previous one nine times."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    id: str
    breaks: Callable[[Path], object]
    where: str  # "file:line:column" ('*' for any number), or the file alone when it has no position
    says: str  # what the diagnostic must say (a part of it)
    commands: tuple[str, ...] = ("build", "validate")
    errors: int = 1  # how many errors the break causes: more than one only where each is its own


def at(line: int, column: int, file: str = "models.d/tiny.yaml") -> str:
    return f"{file}:{line}:{column}"


def in_site(line: int, column: int) -> str:
    return at(line, column, "halogen.yaml")


CASES = [
    # --- YAML itself -----------------------------------------------------------------------
    Case("unclosed-flow-list", model(TINY + "args: [--jinja\n"), at(NEXT + 1, 1), "expected ',' or ']'"),
    Case("tab-indentation", model("name: Tiny\nenv:\n\tA: b\n"), at(3, 1), "indent with spaces, not tabs"),
    Case("duplicate-key", model(TINY + "file: other.gguf\n"), at(NEXT, 1), 'found duplicate key "file"'),
    Case(
        "keys-equal-once-read-as-text",
        model(TINY + 'filters:\n  setParams: {1: a, "1": b}\n'),
        at(NEXT + 1, 21),
        "key '1' appears twice in this mapping",
    ),
    Case(
        "mapping-in-a-plain-value",
        model("file: a: b.gguf\n"),
        at(1, 8),
        "mapping values are not allowed here",
    ),
    Case("undefined-alias", model(TINY + "aliases: [*nope]\n"), at(NEXT, 11), "found undefined alias 'nope'"),
    Case(
        "several-documents",
        model(TINY + "---\nname: Other\n"),
        at(NEXT, 1),
        "a second YAML document follows the first",
    ),
    Case("yaml-version-2", model("%YAML 2.0\n---\n" + TINY), at(1, 1), "incompatible YAML document"),
    Case(
        "mapping-as-a-key",
        model(TINY + "? [a, b]\n: 1\n"),
        at(1, 1),
        "mapping key ('a', 'b') is not a scalar",
    ),
    Case(
        "unknown-key-merged-in",
        model(TINY + "<<: {contextSze: 1}\n"),
        at(1, 1),  # a merged key has no position of its own: its mapping's
        "contextSze: unknown key",
    ),
    # --- bytes and encodings ---------------------------------------------------------------
    Case("latin-1-bytes", model(b"name: Tiny\nfile: caf\xe9.gguf\n"), at(2, 10), "file is not valid UTF-8"),
    Case("utf-16-file", model(TINY.encode("utf-16")), at(1, 1), "file is not valid UTF-8"),
    Case("nul-byte", model(b"name: Ti\x00ny\nfile: a.gguf\n"), at(1, 9), "file contains a NUL byte"),
    Case("empty-model-file", model(""), at(1, 1), "file is empty"),
    Case("empty-halogen-yaml", site(""), in_site(1, 1), "file is empty"),
    Case("model-file-is-a-list", model("- file: a.gguf\n"), at(1, 1), "input should be a valid dictionary"),
    # --- size, depth, expansion ------------------------------------------------------------
    Case(
        "ten-megabyte-file",
        model("# " + "x" * (10 * 1024 * 1024) + "\n"),
        "models.d/tiny.yaml",
        "over the 1048576 byte limit",
    ),
    Case(
        "10000-nested-flow-lists",
        model(TINY + "args: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        at(NEXT, 7 + 64),  # the 65th '['
        "nesting deeper than 64 levels",
    ),
    Case(
        "10000-nested-block-lists",
        model(TINY + "args:\n  " + "- " * 10_000 + "x\n"),
        at(NEXT + 1, 3 + 2 * 64),  # the 65th '-'
        "nesting deeper than 64 levels",
    ),
    Case(
        "billion-laughs",
        model(laughs()),
        "models.d/tiny.yaml:*:*",  # a node of the list the aliases repeat, wherever the count runs out
        "document expands to more than 100000 nodes",
    ),
    Case(
        "aliases-of-a-long-string",
        model("long: &s " + "x" * 300_000 + "\nargs: [*s, *s, *s, *s]\n"),
        at(1, 7),  # the string the aliases repeat
        "document expands to more than 1048576 characters",
    ),
    Case(
        "integer-of-5000-digits",
        edit_model("contextSize: 2048", "contextSize: " + "9" * 5000),
        at(4, 14),
        "integer is outside the 64-bit range",
    ),
    Case("integer-over-64-bits", model(TINY + "ttl: 18446744073709551616\n"), at(NEXT, 6), "64-bit range"),
    # --- tags ------------------------------------------------------------------------------
    Case(
        "python-object-tag",
        model(TINY + "metadata: !!python/object:os.system {}\n"),
        at(NEXT, 1),
        "YAML tag tag:yaml.org,2002:python/object:os.system is not allowed",
    ),
    Case(
        "python-apply-tag",
        model(TINY + "metadata: !!python/object/apply:os.system [echo hi]\n"),
        at(NEXT, 1),
        "python/object/apply:os.system is not allowed",
    ),
    Case(
        "binary-tag",
        model(TINY + "description: !!binary aGVsbG8=\n"),
        at(NEXT, 1),
        "YAML tag !!binary is not allowed",
    ),
    Case("custom-tag", model(TINY + "description: !foo bar\n"), at(NEXT, 1), "YAML tag !foo is not allowed"),
    Case("omap-tag", model(TINY + "env: !!omap [{A: b}]\n"), at(NEXT, 1), "YAML tag !!omap is not allowed"),
    Case("set-tag", model(TINY + "aliases: !!set {a, b}\n"), at(NEXT, 1), "YAML tag !!set is not allowed"),
    Case(
        "unquoted-date",
        model(TINY + "description: 2024-01-01\n"),
        at(NEXT, 1),
        "value of type date is not allowed here",
    ),
    # --- types and keys --------------------------------------------------------------------
    Case(
        "word-for-a-number",
        edit_model("contextSize: 2048", "contextSize: big"),
        at(4, 14),  # at the value
        "contextSize: input should be a valid integer (write a number, a whole one)",
    ),
    Case(
        "boolean-for-a-number",
        edit_model("contextSize: 2048", "contextSize: true"),
        at(4, 1),
        "contextSize: input should be a valid integer",
    ),
    Case(
        "quoted-number",
        edit_model("contextSize: 2048", 'contextSize: "2048"'),
        at(4, 14),
        "input should be a valid integer (write the number without quotes)",
    ),
    Case(
        "string-for-a-list",
        model(TINY + "args: --jinja\n"),
        at(NEXT, 1),
        "args: input should be a valid list",
    ),
    Case(
        "list-for-a-mapping",
        model(TINY + "env: [A=1]\n"),
        at(NEXT, 1),
        "env: input should be a valid dictionary",
    ),
    Case(
        "unknown-model-key",
        model(TINY + "contextSze: 1\n"),
        at(NEXT, 1),
        "contextSze: unknown key (did you mean 'contextSize'?)",
    ),
    Case(
        "unknown-site-key",
        edit_site("  image:\n", "  imgae:\n"),
        in_site(4, 3),
        "deployment.imgae: unknown key (did you mean 'image'?)",
    ),
    Case("lone-surrogate", model(TINY + 'description: "\\ud800"\n'), at(NEXT, 1), "lone surrogate"),
    # --- files and folders -----------------------------------------------------------------
    Case("symlink-to-a-file-outside", outside_file, "models.d/x.yaml", "symlink points outside models.d/"),
    Case(
        "symlink-to-etc-passwd",
        symlink("passwd.yaml", "/etc/passwd"),
        "models.d/passwd.yaml",
        "symlink points outside models.d/",
    ),
    Case(
        "symlink-loop", symlink("x.yaml", "x.yaml"), "models.d/x.yaml", "symlink cannot be followed: it loops"
    ),
    Case(
        "symlink-to-nothing",
        symlink("x.yaml", "gone.yaml"),
        "models.d/x.yaml",
        "symlink cannot be followed: No such file or directory",
    ),
    Case(
        "directory-named-like-a-model",
        lambda root: (root / "models.d" / "x.yaml").mkdir(),
        "models.d/x.yaml",
        "not a regular file",
    ),
    Case(
        "halogen-yaml-is-a-directory",
        replace_site_file(Path.mkdir),
        "halogen.yaml",
        "not a regular file",
        ("build",),
    ),
    Case(
        "halogen-yaml-is-dev-zero",
        replace_site_file(lambda p: p.symlink_to("/dev/zero")),
        "halogen.yaml",
        "not a regular file",
        ("build",),
    ),
    Case(
        "halogen-yaml-missing",
        replace_site_file(lambda p: None),
        "halogen.yaml",
        "not found in ",
        ("build",),
    ),
    Case(
        "models-folder-missing", lambda root: shutil.rmtree(root / "models.d"), "models.d", "folder not found"
    ),
    Case("models-folder-empty", remove_models, "models.d", "no model files"),
    Case(
        "models-folder-holding-only-a-readme",
        both(remove_models, lambda root: (root / "models.d" / "README.md").write_text("# models\n")),
        "models.d",
        "no model files",
    ),
    Case(
        "one-id-in-two-files",
        lambda root: (root / "models.d" / "tiny.yml").write_text(TINY),
        "models.d/tiny.yml",
        "model id 'tiny' is already defined by models.d/tiny.yaml",
    ),
    Case("file-name-not-an-id", model(TINY, "-tiny"), "models.d/-tiny.yaml", "(the file name) is not valid"),
    Case(
        "file-name-not-utf-8",
        lambda root: (root / "models.d" / os.fsdecode(b"\xff.yaml")).write_text(TINY),
        "models.d/\\udcff.yaml",
        "(the file name) is not valid",
    ),
    # --- model paths -----------------------------------------------------------------------
    Case(
        "file-climbing-out-with-dotdot",
        edit_model("file: tiny/tiny.gguf", "file: ../../etc/passwd"),
        at(2, 1),
        "'../../etc/passwd' is not under the models mount /models",
    ),
    Case(
        "file-absolute-outside-the-mount",
        edit_model("file: tiny/tiny.gguf", "file: /etc/passwd"),
        at(2, 1),
        "'/etc/passwd' is not under the models mount /models",
    ),
    Case(
        "file-climbing-out-through-a-macro",
        both(
            site(SITE + 'macros:\n  up: ".."\n'),
            edit_model("file: tiny/tiny.gguf", "file: ${up}/${up}/etc/x.gguf"),
        ),
        at(2, 1),
        "model path /models/../../etc/x.gguf is not under the models mount /models",
    ),
    Case(
        "raw-cmd-loading-a-model-outside-the-mount",
        model("cmd: llama-server -m /elsewhere/x.gguf --port ${PORT}\n"),
        at(1, 1),
        "model path /elsewhere/x.gguf is not under the models mount /models",
    ),
    Case(
        "mount-path-with-dotdot",
        edit_site("mountPath: /models", "mountPath: /models/../etc"),
        in_site(8, 5),
        "/models/../etc contains '..'",
    ),
    Case(
        "mount-path-over-scratch",
        edit_site("mountPath: /models", "mountPath: /tmp/models"),
        in_site(8, 5),
        "collides with the config or scratch mounts",
    ),
    # --- ids and aliases -------------------------------------------------------------------
    Case(
        "ids-differing-only-in-case",
        model(TINY, "Tiny"),
        at(1, 1),
        "model id 'tiny' clashes with the id of 'Tiny'",
    ),
    Case(
        "alias-equal-to-another-id",
        model(SMALL + "aliases: [TINY]\n", "small"),
        at(NEXT, 11, "models.d/small.yaml"),
        "alias 'TINY' is already the id of 'tiny'",
    ),
    Case(
        "alias-in-two-models",
        both(model(SMALL + "aliases: [x]\n", "small"), model(TINY + "aliases: [X]\n")),
        at(NEXT, 11),
        "alias 'X' is already an alias of 'small'",
    ),
    Case(
        "alias-ending-in-latest",
        model(TINY + "aliases: [t:latest]\n"),
        at(NEXT, 11),
        "may not end in ':latest'",
    ),
    Case(
        "variant-id-equal-to-an-alias",
        both(model(SMALL + "aliases: ['tiny:high']\n", "small"), model(TINY + "variants:\n  high: {a: 1}\n")),
        at(NEXT + 1, 3),
        "variant id 'tiny:high' is already an alias of 'small'",
    ),
    Case(
        "variant-named-latest",
        model(TINY + "variants:\n  latest: {a: 1}\n"),
        at(NEXT + 1, 3),
        "a variant may not be named 'latest'",
    ),
    Case(
        "variant-setting-model",
        model(TINY + "variants:\n  high: {model: other}\n"),
        at(NEXT + 1, 10),
        "a variant may not set `model`",
    ),
    Case(
        "variant-name-with-a-space",
        model(TINY + "variants:\n  'a b': {x: 1}\n"),
        at(NEXT + 1, 3),
        "variants",
    ),
    Case(
        "alias-equal-to-another-id-with-latest",
        model(SMALL + "aliases: [tiny:latest]\n", "small"),
        at(NEXT, 11, "models.d/small.yaml"),
        "alias 'tiny:latest' is already the id of 'tiny'",
    ),
    # --- environment and arguments ---------------------------------------------------------
    Case(
        "env-name-with-equals",
        model(TINY + 'env: {"A=B": x}\n'),
        at(NEXT, 7),
        "env.A=B: is not in the form expected here (environment variable names are upper-case",
    ),
    Case(
        "env-name-with-newline",
        model(TINY + 'env: {"A\\nB": x}\n'),
        at(NEXT, 7),
        'env."A\\nB": is not in the form expected here',
    ),
    Case(
        "env-value-with-newline",
        model(TINY + 'env: {A: "x\\ny"}\n'),
        at(NEXT, 10),
        "env.A: is not in the form expected here (one line, without NUL bytes)",
    ),
    Case(
        "site-env-name-in-lower-case",
        edit_site('HIP_VISIBLE_DEVICES: "-1"', 'hip: "-1"'),
        in_site(20, 7),
        "backends.cpu.env.hip: is not in the form expected here",
    ),
    Case(
        "arg-with-newline",
        model(TINY + 'args: ["--x\\ny"]\n'),
        at(NEXT, 8),
        "args[0]: is not in the form expected here",
    ),
    Case(
        "arg-with-nul",
        model(TINY + 'args: ["--x\\0"]\n'),
        at(NEXT, 8),
        "args[0]: is not in the form expected here",
    ),
    Case(
        "cmd-with-nul",
        model('cmd: "llama-server -m /models/x.gguf --port ${PORT} \\0"\n'),
        at(1, 6),
        "cmd: is not in the form expected here (without NUL bytes",
    ),
    # --- macros ----------------------------------------------------------------------------
    Case(
        "macro-using-itself",
        site(SITE + "macros:\n  a: --x ${a}\n"),
        in_site(SITE_NEXT + 1, 3),
        "macro 'a' refers to itself",
    ),
    Case(
        "macro-using-a-later-one",
        site(SITE + "macros:\n  a: ${b}\n  b: x\n"),
        in_site(SITE_NEXT + 1, 3),
        "macro 'a' uses ${b}, declared after it",
    ),
    Case(
        "macro-using-an-unknown-one",
        site(SITE + "macros:\n  a: ${zz}\n"),
        in_site(SITE_NEXT + 1, 3),
        "unknown macro ${zz}",
    ),
    Case(
        "macro-with-a-reserved-name",
        site(SITE + 'macros:\n  PORT: "1"\n'),
        in_site(SITE_NEXT + 1, 3),
        "macro name 'PORT' is reserved",
    ),
    Case(
        "macro-named-like-a-backend",
        site(SITE + "macros:\n  cpu: x\n"),
        in_site(SITE_NEXT + 1, 3),
        "macro 'cpu' has the name of a backend",
    ),
    Case(
        "macro-with-nul",
        site(SITE + 'macros:\n  a: "x\\0"\n'),
        in_site(SITE_NEXT + 1, 6),
        "without NUL bytes",
    ),
    Case(
        "unknown-macro-in-file",
        edit_model("file: tiny/tiny.gguf", "file: ${nope}.gguf"),
        at(2, 1),
        "file: unknown macro ${nope}",
    ),
    Case(
        "unknown-macro-in-args",
        model(TINY + 'args: ["${nope}"]\n'),
        at(NEXT, 8),
        "args[0]: unknown macro ${nope}",
    ),
    # --- rules across files ----------------------------------------------------------------
    Case(
        "backend-not-declared",
        model(TINY + "backend: rocm\n"),
        at(NEXT, 1),
        "backend 'rocm' is not declared in halogen.yaml",
    ),
    Case(
        "backend-ambiguous",
        site(SITE + "  rocm: {}\n"),
        at(1, 1),
        "no backend given and the site declares several",
        errors=2,  # each of the two models names none
    ),
    Case(
        "backend-id-longer-than-a-macro-name",
        edit_site("  cpu:\n", "  " + "c" * 64 + ":\n"),
        in_site(17, 3),
        "backend ids become macro names",
    ),
    Case(
        "group-not-declared",
        edit_model("group: main", "group: nope"),
        at(3, 1),
        "group 'nope' is not declared in halogen.yaml",
    ),
    Case(
        "group-named-like-the-implicit-one",
        edit_site("  main: {}", "  (default): {}"),
        in_site(15, 3),
        "groups.(default): is not in the form expected here",
        errors=3,  # and the two models' group main is no longer declared
    ),
    Case(
        "preload-naming-no-model",
        edit_site("  healthCheckTimeout: 60\n", "  healthCheckTimeout: 60\n  preload: [ghost]\n"),
        in_site(14, 13),
        "preload names 'ghost', which is no model id or alias",
    ),
    Case(
        "context-above-the-model-context-length",
        model(TINY + "metadata:\n  contextLength: 1024\n"),
        at(4, 1),
        "contextSize 2048 is above the model's contextLength 1024",
    ),
    Case(
        "context-zero",
        edit_model("contextSize: 2048", "contextSize: 0"),
        at(4, 1),
        "contextSize: input should be greater than 0",
    ),
    Case(
        "flag-contradicting-the-backend",
        model(TINY + 'args: [--n-gpu-layers, "99"]\n'),
        at(NEXT, 8),
        "--n-gpu-layers 99 contradicts -ngl 0 from backend 'cpu'",
    ),
    Case(
        "flag-given-twice",
        model(TINY + 'args: [-b, "1", --batch-size, "2"]\n'),
        at(NEXT, 17),
        "--batch-size 2 contradicts -b 1 earlier in the same list",
    ),
    Case(
        "flag-halogen-writes",
        model(TINY + 'args: [--port, "9000"]\n'),
        at(NEXT, 8),
        "--port is written by halogen",
    ),
    Case(
        "flag-halogen-writes-spelled-with-underscores",
        model(TINY + 'args: [--ctx_size, "4096"]\n'),
        at(NEXT, 8),
        "--ctx_size is written by halogen",
    ),
    Case(
        "ttl-negative",
        model(TINY + "ttl: -1\n"),
        at(NEXT, 1),
        "ttl: input should be greater than or equal to 0",
    ),
    Case(
        "cmd-beside-file",
        model(TINY + "cmd: llama-server --port ${PORT}\n"),
        at(1, 1),
        "`cmd` replaces `file`, `args` and `contextSize`",
    ),
    Case(
        "cmd-without-port",
        model("name: Raw\ncmd: llama-server -m /models/x.gguf\n"),
        at(2, 1),
        "cmd: cmd does not use ${PORT}",
    ),
    Case(
        "cmd-with-an-open-quote",
        model("cmd: llama-server -m '/models/x.gguf --port ${PORT}\n"),
        at(1, 1),
        "cannot split command: No closing quotation",
    ),
    Case(
        "filters-touching-model",
        model(TINY + "filters:\n  stripParams: [model]\n"),
        at(NEXT, 1),
        "filters may not touch `model`",
    ),
    Case(
        "capability-unknown",
        model(TINY + "capabilities: [flying]\n"),
        at(NEXT, 16),
        "capabilities[0]: input should be 'completion'",
    ),
    Case(
        "image-tag-latest",
        edit_site('    tag: "1.2.3"\n', "    tag: latest\n"),
        in_site(4, 3),
        "tag 'latest' is not allowed",
    ),
    Case(
        "image-tag-and-digest",
        edit_site('    tag: "1.2.3"\n', '    tag: "1.2.3"\n    digest: sha256:' + "a" * 64 + "\n"),
        in_site(4, 3),
        "give a tag or a digest, not both",
    ),
    Case(
        "grace-period-shorter-than-unload",
        edit_site("  name: llm\n", "  name: llm\n  terminationGracePeriodSeconds: 3\n"),
        in_site(3, 3),
        "3s leaves no time to stop llama-server",
    ),
    Case(
        "binary-where-the-image-has-none",
        edit_site("    args: [--threads", "    binary: /usr/bin/llama-server\n    args: [--threads"),
        in_site(18, 5),
        "/usr/bin/llama-server is not where a rocm image has llama-server",
    ),
    Case(
        "address-without-a-load-balancer",
        edit_site("  name: llm\n", "  name: llm\n  service:\n    address: 10.0.0.1\n"),
        in_site(4, 5),
        "an address needs service type LoadBalancer",
    ),
    Case(
        "allowed-host-with-a-port",
        edit_site("  name: llm\n", "  name: llm\n  allowHosts: [chat.lan:8080]\n"),
        in_site(3, 16),
        "a host name without scheme or port (chat.lan)",
    ),
    Case(
        "peer-proxy-with-a-bracket-left-open",
        site(SITE + 'peers:\n  box2:\n    proxy: "http://[::1"\n    models: [m]\n'),
        in_site(SITE_NEXT + 2, 5),
        "invalid peer proxy URL 'http://[::1': Invalid IPv6 URL",
    ),
    Case(
        "peer-proxy-port-out-of-range",
        site(SITE + "peers:\n  box2:\n    proxy: http://box2.lan:99999\n    models: [m]\n"),
        in_site(SITE_NEXT + 2, 5),
        "Port out of range 0-65535",
    ),
    Case(
        "proxy-port-among-model-ports",
        edit_site("  name: llm\n", "  name: llm\n  port: 5800\n"),
        in_site(3, 3),
        "port 5800 is inside the model port range 5800-5801",
    ),
    Case(
        "kubernetes-version-without-a-schema",
        edit_site("  namespace: ai\n", '  namespace: ai\n  kubernetesVersion: "1.99"\n'),
        in_site(4, 3),
        "no schema for Kubernetes 1.99",
        ("build",),  # a manifest check: validate does not run it
    ),
    Case(
        "kubernetes-version-without-the-sleep-action",
        edit_site("  namespace: ai\n", '  namespace: ai\n  kubernetesVersion: "1.28"\n'),
        in_site(4, 3),
        "1.28 is older than 1.30, the first Kubernetes to run the pod's preStop sleep by default",
    ),
]


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _start(command: str, root: Path) -> subprocess.Popen[str]:
    args = ["build", "--src", str(root)] if command == "build" else ["validate", str(root)]
    env = {k: v for k, v in os.environ.items() if k != "HALOGEN_DEBUG"}
    return subprocess.Popen(
        [sys.executable, "-m", "halogen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_limits,
    )


def _state(root: Path) -> tuple[list[str], dict[str, tuple[bytes, int]]]:
    """The site folder's entries and out/'s files with their mtimes."""
    out = root / "out"
    return sorted(os.listdir(root)), {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())
    }


@pytest.fixture(scope="module")
def good_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    (root / "models.d").mkdir()
    (root / "halogen.yaml").write_text(SITE)
    (root / "models.d" / "tiny.yaml").write_text(TINY)
    (root / "models.d" / "small.yaml").write_text(SMALL)
    result = halogen("build", "--src", root)
    assert result.returncode == 0, result.stderr
    return root


def test_the_corpus_holds_at_least_40_distinct_cases() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_one_positioned_diagnostic_exit_1_and_leaves_out_as_it_was(
    case: Case, good_site: Path, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    shutil.copytree(good_site, root, symlinks=True)  # copy2: out/ keeps its mtimes
    case.breaks(root)
    before = _state(root)
    running = {command: _start(command, root) for command in case.commands}  # side by side
    for command, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"halogen {command} ran past {TIME_LIMIT}s")
        assert "Traceback" not in stdout + stderr and "internal error" not in stderr, stderr
        assert process.returncode == 1, (command, stderr)
        where = re.compile(re.escape(case.where).replace(r"\*", r"[1-9][0-9]*") + ": ")
        # One error, the one named: no second error, warnings aside, and the summary says one.
        errors = [
            line
            for line in stderr.splitlines()
            if not line.startswith("halogen: ") and ": warning:" not in line
        ]
        assert len(errors) == case.errors, (command, case.where, stderr)
        assert any(where.match(line) and case.says in line for line in errors), (command, case.says, stderr)
        written = "; nothing was written" if command == "build" else "\n"  # validate never writes
        assert f"halogen: {case.errors} error{'s' * (case.errors > 1)}{written}" in stderr, stderr
    assert _state(root) == before


def test_a_utf8_bom_is_accepted_and_builds_the_same_bytes(good_site: Path, tmp_path: Path) -> None:
    """A UTF-8 BOM is legal YAML and editors on Windows write one: halogen reads past it."""
    root = tmp_path / "site"
    shutil.copytree(good_site, root, symlinks=True)
    for path in [root / "halogen.yaml", *(root / "models.d").iterdir()]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = halogen("build", "--check", "--src", root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_positions_in_a_file_with_a_bom_count_from_after_it(good_site: Path, tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(good_site, root, symlinks=True)
    (root / "models.d" / "tiny.yaml").write_bytes(b"\xef\xbb\xbfcontextSze: 1\n" + TINY.encode())
    result = halogen("validate", root)
    assert result.returncode == 1
    assert "models.d/tiny.yaml:1:1: contextSze: unknown key" in result.stderr


def test_crlf_line_endings_build_the_same_bytes_and_the_same_positions(
    good_site: Path, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    shutil.copytree(good_site, root, symlinks=True)
    for path in [root / "halogen.yaml", *(root / "models.d").iterdir()]:
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    check = halogen("build", "--check", "--src", root)
    assert check.returncode == 0, check.stdout + check.stderr
    (root / "models.d" / "tiny.yaml").write_bytes((TINY + "contextSze: 1\n").replace("\n", "\r\n").encode())
    result = halogen("validate", root)
    assert f"models.d/tiny.yaml:{NEXT}:1: contextSze: unknown key" in result.stderr
