"""No module inside `halogen/` imports itself back, directly or through others, and no package
(a folder) imports one that imports it back: the package's seams (compiler, loader, routers,
Swapper, routes) and its layers stay a graph that can be read bottom-up."""

from __future__ import annotations

import ast
import itertools
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


# Package cycles known today, each with what removes it. Nothing else may be listed here.
EXPECTED_PACKAGE_CYCLES: dict[frozenset[str], str] = {}


def package_of(name: str, path: Path, root: Path) -> str | None:
    """The folder a module sits in, as a dotted name; None for the modules loose at the root.
    Those are the entry point (`cli`) and small shared leaves (`diagnostics`, `yamlio`,
    `modelfiles`, ...): counted as one package they would make a cycle with every folder
    (cli imports commands, commands import diagnostics), so the module check above holds them."""
    folder = path.parent
    return None if folder == root else ".".join([root.name, *folder.relative_to(root).parts])


def package_graph(root: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """Package -> the packages it imports, each with one (module, imported module) that does."""
    known = modules(root)
    graph: dict[str, dict[str, tuple[str, str]]] = {}
    for name, path in known.items():
        here = package_of(name, path, root)
        if here is None:
            continue
        edges = graph.setdefault(here, {})
        for dep in sorted(imports(name, path, known)):
            there = package_of(dep, known[dep], root)
            if there is not None and there != here:
                edges.setdefault(there, (name, dep))
                graph.setdefault(there, {})
    return graph


def cycle_path(graph: Mapping[str, Mapping[str, object]], component: list[str]) -> list[str]:
    """A shortest way round the cycle from the component's first member back to it."""
    start, members = component[0], set(component)
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for dep in sorted(graph[node]):
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if dep in members and dep not in came:
                    came[dep] = node
                    nxt.append(dep)
        frontier = nxt
    raise AssertionError(f"{component} is not a cycle")


def package_cycles(root: Path) -> dict[frozenset[str], str]:
    """Each package cycle, keyed by its packages, told as a path with the imports that make it."""
    graph = package_graph(root)
    out = {}
    for component in cycles({p: set(deps) for p, deps in graph.items()}):
        path = cycle_path(graph, component)
        steps = [
            f"{a} -> {b} ({graph[a][b][0]} imports {graph[a][b][1]})" for a, b in itertools.pairwise(path)
        ]
        out[frozenset(component)] = "; ".join(steps)
    return out


def test_no_module_inside_halogen_imports_itself_back() -> None:
    assert import_cycles(PACKAGE) == []


def test_no_package_inside_halogen_imports_one_that_imports_it_back() -> None:
    found = package_cycles(PACKAGE)
    unexpected = {k: v for k, v in found.items() if k not in EXPECTED_PACKAGE_CYCLES}
    assert unexpected == {}, "\n".join(unexpected.values())
    gone = {sorted(k)[0]: why for k, why in EXPECTED_PACKAGE_CYCLES.items() if k not in found}
    assert gone == {}, "no longer a cycle: delete its line from EXPECTED_PACKAGE_CYCLES"


def test_the_package_check_finds_a_cycle_no_module_closes_and_tells_its_path(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    for folder in ("a", "b", "a/inner"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "a" / "x.py").write_text("from pkg.b import y\n")
    (root / "b" / "y.py").write_text("")
    (root / "b" / "z.py").write_text("def f() -> None:\n    from ..a import w\n")
    (root / "a" / "w.py").write_text("")
    (root / "a" / "inner" / "v.py").write_text("import pkg.a.w\n")  # a child importing its parent alone
    (root / "loose.py").write_text("import pkg.a.x\n")
    (root / "a" / "u.py").write_text("from pkg import loose\n")  # the root's loose modules are no package
    assert import_cycles(root) == []
    assert package_cycles(root) == {
        frozenset(
            {"pkg.a", "pkg.b"}
        ): "pkg.a -> pkg.b (pkg.a.x imports pkg.b.y); pkg.b -> pkg.a (pkg.b.z imports pkg.a.w)"
    }


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
        "import sys, halogen.runtime.serve.app, halogen.runtime.serve.server;"
        "print(sorted(m for m in sys.modules if m.startswith(('halogen.compiler.site', 'halogen.compiler.render',"
        " 'halogen.hub.download', 'huggingface_hub', 'jinja2', 'kubernetes_validate'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_halogen_validate_loads_neither_the_manifests_nor_the_hub_nor_the_server() -> None:
    """`halogen validate` runs on every commit (pre-commit, CI): it imports what it checks with,
    not the manifest renderer, the pull side's sources document, the Hub client or the proxy."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from halogen.cli import main\n"
        "sys.argv = ['halogen', 'validate']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('halogen.hub', 'halogen.compiler.render.wanted',"
        " 'halogen.compiler.remote_lock', 'halogen.compiler.render.kube',"
        " 'halogen.compiler.render.manifests', 'halogen.runtime.serve.app', 'halogen.runtime.serve.server', 'jinja2',"
        " 'kubernetes_validate', 'jsonschema', 'huggingface_hub', 'aiohttp'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert loaded.stdout.strip() == "[]"


# halogen serve's folders, top to bottom (halogen/runtime/__init__.py): each imports only those
# below it, so a route never reaches into the server and a process never into a route.
RUNTIME_LAYERS = ("serve", "ui", "apis", "forward", "scheduling", "process", "base")


def layer_breaches(graph: Mapping[str, Mapping[str, tuple[str, str]]], prefix: str) -> list[str]:
    """Each import from a layer to one above it (or to a folder no layer names)."""

    def layer(package: str) -> int | None:
        if not package.startswith(prefix + "."):
            return None
        top = package[len(prefix) + 1 :].split(".")[0]
        return RUNTIME_LAYERS.index(top) if top in RUNTIME_LAYERS else -1

    out = []
    for here, edges in sorted(graph.items()):
        for there, (module, dep) in sorted(edges.items()):
            a, b = layer(here), layer(there)
            if a is not None and b is not None and (a == -1 or b == -1 or b <= a):
                out.append(f"{module} imports {dep}")
    return out


def test_the_runtimes_folders_import_only_the_layers_below_them() -> None:
    assert layer_breaches(package_graph(PACKAGE), "halogen.runtime") == []


def test_the_layer_check_names_an_import_upward(tmp_path: Path) -> None:
    root = tmp_path / "halogen"
    for folder in ("runtime", "runtime/serve", "runtime/process", "runtime/base"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "runtime" / "serve" / "app.py").write_text("from halogen.runtime.process import up\n")
    (root / "runtime" / "process" / "up.py").write_text("from halogen.runtime.base import errors\n")
    (root / "runtime" / "base" / "errors.py").write_text("")
    assert layer_breaches(package_graph(root), "halogen.runtime") == []
    (root / "runtime" / "base" / "errors.py").write_text(
        "def f() -> None:\n    from halogen.runtime.serve import app\n"
    )
    assert layer_breaches(package_graph(root), "halogen.runtime") == [
        "halogen.runtime.base.errors imports halogen.runtime.serve.app"
    ]
