"""A mutation audit: do the tests notice a bug a developer might really write?

Each entry of a data file (bench/mutations.toml) names a file, a snippet of it and the snippet
with one realistic bug in its place, and the tests that should catch it. For each, in a
temporary copy of the tree (the working tree is never touched): the named tests must pass as
the tree stands, then fail once the snippet is replaced. A mutation they still pass
"survived": the tests do not hold that line. A snippet no longer found once (the code moved
on) is reported as stale, not counted.

    python -m bench.mutations [--data FILE] [--write] [ID ...]

The copy is the tree's files as git sees them (tracked, and new ones not ignored), uncommitted
edits included; the tests run with the copy first on PYTHONPATH, so the console script and
`python -m halogen` they start import the mutated package too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().with_name("mutations.toml")
RESULTS = Path(__file__).resolve().parent / "results" / "mutations.md"
TIMEOUT = 600.0
"""Seconds for one run of a mutation's tests; a mutant that hangs them is caught (killed)."""


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    what: str
    original: str
    mutated: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    verdict: str  # killed, survived, stale, baseline fails, error
    line: int | None
    seconds: float
    detail: str = ""


def load(path: Path) -> list[Mutation]:
    """The mutations in `path`: a TOML file of [[mutation]] tables with id, file, what,
    original, mutated and tests (pytest arguments: files, node ids, -k expressions)."""
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("mutation", [])):
        missing = [k for k in ("id", "file", "what", "original", "mutated", "tests") if k not in entry]
        if missing:
            raise SystemExit(f"{path}: mutation #{i + 1} lacks {', '.join(missing)}")
        out.append(
            Mutation(
                entry["id"],
                entry["file"],
                entry["what"],
                entry["original"],
                entry["mutated"],
                tuple(entry["tests"]),
            )
        )
    ids = [m.id for m in out]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def shared_folder() -> Path | None:
    """`shared` beside the checkout (or beside its main checkout, from a git worktree), which
    some tests read; the copy gets a link to it in the same place."""
    here = REPO.parent / "shared"
    if here.exists():
        return here
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    there = Path(common).parent.parent / "shared" if common else None
    return there if there is not None and there.exists() else None


def copy_tree(dest: Path) -> Path:
    """The tree's files under `dest/<name>`, and the shared folder beside it; the copy's root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    root = dest / REPO.name
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        # Deleted in the working tree; a symlink (halogen/templates -> ../templates) is copied
        # as one, even to a folder.
        if not source.is_file() and not source.is_symlink():
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    shared = shared_folder()
    if shared is not None:
        (dest / "shared").symlink_to(shared)
    return root


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}


def imports_from(root: Path) -> Path:
    """Where the tests' Python finds `halogen` in the copy: it must be the copy's own."""
    found = subprocess.run(
        [sys.executable, "-c", "import halogen; print(halogen.__file__)"],
        cwd=root,
        env=environment(root),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(found)


def run_tests(root: Path, tests: Sequence[str]) -> tuple[str, float, str]:
    """`passed`, `failed`, `timeout` or `error` (pytest could not run them), the seconds taken,
    and the last lines of the output."""
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    began = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=root, env=environment(root), capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - began, ""
    seconds = time.monotonic() - began
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-3:])
    status = {0: "passed", 1: "failed"}.get(result.returncode, "error")
    return status, seconds, tail


def audit(mutations: Sequence[Mutation], say: bool = True) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mutations.") as scratch:
        root = copy_tree(Path(scratch))
        where = imports_from(root)
        if root not in where.parents:
            raise SystemExit(f"the tests would import halogen from {where}, not from the copy")
        baselines: dict[tuple[str, ...], tuple[str, float, str]] = {}
        for m in mutations:
            path = root / m.file
            text = path.read_text() if path.is_file() else ""
            count = text.count(m.original)
            if count != 1:
                found = "not found" if count == 0 else f"found {count} times"
                outcomes.append(Outcome(m, "stale", None, 0.0, f"the original snippet is {found}"))
            else:
                line = text[: text.index(m.original)].count("\n") + 1
                if m.tests not in baselines:
                    baselines[m.tests] = run_tests(root, m.tests)
                base, _, base_tail = baselines[m.tests]
                if base != "passed":
                    outcomes.append(Outcome(m, "baseline fails", line, 0.0, base_tail))
                else:
                    path.write_text(text.replace(m.original, m.mutated))
                    try:
                        status, seconds, tail = run_tests(root, m.tests)
                    finally:
                        path.write_text(text)
                    verdict = {"failed": "killed", "timeout": "killed", "passed": "survived"}.get(
                        status, "error"
                    )
                    detail = "the tests hung past the timeout" if status == "timeout" else tail
                    outcomes.append(Outcome(m, verdict, line, seconds, detail))
            if say:
                o = outcomes[-1]
                print(f"{o.verdict:>14}  {m.id}  ({o.seconds:.1f} s)", flush=True)
    return outcomes


def commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head} with uncommitted edits" if dirty else head


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if REPO in path.parents else path.name


def table(outcomes: Sequence[Outcome], data: Path) -> str:
    counted = [o for o in outcomes if o.verdict in ("killed", "survived")]
    killed = sum(o.verdict == "killed" for o in counted)
    ratio = (
        f"{killed} of {len(counted)} killed ({killed / len(counted):.0%})" if counted else "nothing counted"
    )
    rows = [
        "# Mutation audit",
        "",
        f"`python -m bench.mutations --write` at {commit()}, from `{_shown(data)}`. Each "
        "mutation is one realistic bug put in a temporary copy of the tree; its tests must pass "
        "without it (checked first) and fail with it: killed. Survived: the tests pass with the bug.",
        "",
        f"**{ratio}.**",
        "",
        "| mutation | where | the bug | tests | result | s |",
        "|---|---|---|---|---|---:|",
    ]
    for o in outcomes:
        where = f"{o.mutation.file}:{o.line}" if o.line else o.mutation.file
        tests = f"`{shlex.join(o.mutation.tests)}`"
        counts = o.verdict in ("killed", "survived") or not o.detail
        result = o.verdict if counts else f"{o.verdict}: {o.detail.splitlines()[-1]}"
        rows.append(
            f"| {o.mutation.id} | {where} | {o.mutation.what} | {tests} | {result.replace('|', '/')} | {o.seconds:.1f} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutations", description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="run only these mutations")
    parser.add_argument("--data", type=Path, default=DATA, help="the mutations (TOML)")
    parser.add_argument(
        "--write", action="store_true", help=f"write the table to {RESULTS.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    mutations = load(args.data.resolve())
    unknown = sorted(set(args.ids) - {m.id for m in mutations})
    if unknown:
        parser.error(f"no mutation {', '.join(unknown)} in {args.data}")
    chosen = [m for m in mutations if not args.ids or m.id in args.ids]
    outcomes = audit(chosen)
    report = table(outcomes, args.data.resolve())
    print(report)
    if args.write:
        RESULTS.write_text(report)
    return 0 if all(o.verdict == "killed" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
