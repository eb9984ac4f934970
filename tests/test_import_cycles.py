"""No module inside `halogen/` imports itself back, directly or through others: the package's
seams (compiler, loader, routers, Swapper, routes) stay a graph that can be read bottom-up."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import halogen

PACKAGE = Path(halogen.__file__).parent


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module under the package at `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of the package that `name` imports anywhere in its file (lazy imports in a
    function count: they close a cycle as surely, only later)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    out.add(f"{base}.{alias.name}")
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def cycles(graph: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def import_cycles(root: Path) -> list[list[str]]:
    known = modules(root)
    return list(cycles({name: imports(name, path, known) for name, path in known.items()}))


def test_no_module_inside_halogen_imports_itself_back() -> None:
    assert import_cycles(PACKAGE) == []


def test_the_cycle_check_finds_a_cycle_through_a_lazy_import_and_a_relative_one(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "b.py").write_text("from . import c\n")
    (root / "sub" / "c.py").write_text("def f() -> None:\n    from pkg import a\n")
    (root / "d.py").write_text("import pkg.a\n")
    assert import_cycles(root) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]


def test_halogen_serve_loads_neither_the_compiler_nor_the_download() -> None:
    """The image runs only the proxy: its idle memory must not carry the site's input models,
    the renderer or the Hub client (they took 18 MB of RSS when the runtime reached them)."""
    import subprocess
    import sys

    probe = (
        "import sys, halogen.runtime.app, halogen.runtime.server;"
        "print(sorted(m for m in sys.modules if m.startswith(('halogen.spec', 'halogen.render',"
        " 'halogen.hub.download', 'huggingface_hub', 'jinja2', 'kubernetes_validate'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
