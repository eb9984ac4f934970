"""What the commands say about themselves reads right: a command that never writes does not
say it wrote nothing, counts agree with their noun, and a hint (printed in parentheses) holds none
of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.compiler.conftest import REPO
from tests.compiler.test_site_finding import NAME, REPO_ID, site, typed

__all__ = ["site"]  # the fixture, shared with test_site_finding


def broken(site: Path) -> None:
    (site / "models.d" / "tiny.yaml").write_text(f"file: {REPO_ID}/{NAME}\ncontextSize: many\n")


def test_validate_counts_the_errors_and_does_not_say_nothing_was_written(site: Path) -> None:
    broken(site)
    result = typed(site, "validate")
    assert result.returncode == 1
    assert result.stderr.endswith("halogen: 1 error\n"), result.stderr


def test_lock_check_counts_the_errors_and_does_not_say_nothing_was_written(site: Path) -> None:
    broken(site)
    result = typed(site, "lock", "--check")
    assert result.returncode == 1
    assert result.stderr.endswith("halogen: 1 error\n"), result.stderr


def test_build_still_says_it_wrote_nothing_when_it_refuses(site: Path) -> None:
    broken(site)
    result = typed(site, "build")
    assert result.stderr.endswith("halogen: 1 error; nothing was written\n"), result.stderr


def test_a_lock_of_one_file_says_one_file(site: Path) -> None:
    result = typed(site, "lock")
    assert result.returncode == 0, result.stderr
    assert "halogen: wrote halogen.lock (1 file)\n" in result.stderr


def _literal(node: ast.expr) -> str:
    """The text a string expression writes, with `{}` for what it computes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) + _literal(node.right)
    if isinstance(node, ast.IfExp):
        return _literal(node.body) + " " + _literal(node.orelse)
    return "{}"


def _hints() -> list[tuple[str, str]]:
    """Every hint written in halogen's diagnostics: `.diagnostic(path, message, hint)` and
    `Diagnostic(file, line, column, field, message, hint)`, with where it is written."""
    found = []
    for path in sorted((REPO / "halogen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            hint = {"diagnostic": 2, "Diagnostic": 5}.get(name)
            values = [k.value for k in node.keywords if k.arg == "hint"]
            if hint is not None and len(node.args) > hint:
                values.append(node.args[hint])
            found += [(f"{path.relative_to(REPO)}:{node.lineno}", _literal(v)) for v in values]
    return found


def test_no_hint_holds_parentheses_of_its_own() -> None:
    """A diagnostic prints its hint in parentheses: one inside made `(... (...))`."""
    hints = _hints()
    assert len(hints) > 50  # the scan finds them
    assert [(where, text) for where, text in hints if "(" in text or ")" in text] == []
