"""The swap matrix's expression language and its solver, as llama-swap defines them
(`internal/matrix/dsl.go`, `internal/matrix/program.go`).

A set is an expression over model ids: `a & b` (run together), `a | b` (alternatives, tried
left to right), parentheses, and `+name` (inline another set). Each expression stands for the
concrete sets it expands to, and a concrete set also allows every subset of itself. The solver
never expands the products: it projects every expression onto the models a question is about
(the target and the running ones), keeping only the maximal projections.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Resolver = Callable[[str], str | None]
"""Maps an identifier in an expression to a model id, or None when it names nothing."""


class MatrixError(Exception):
    """One load-time error in a matrix, with the set it is about ("" = the matrix as a whole)."""

    def __init__(self, message: str, set_name: str = "", ident: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.set_name = set_name
        self.ident = ident  # the unknown identifier, when that is the error


def _quote(text: str) -> str:
    """Go's %q for the strings the messages quote."""
    return json.dumps(text, ensure_ascii=False)


# --- the language ---------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    kind: Literal["leaf", "ref", "and", "or"]
    name: str = ""  # a leaf's model id (after resolving), or the referenced set
    children: list[Node] = field(default_factory=list)
    ref: Node | None = None  # a `+name` linked to that set's expression


def _ident_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch in "_-."


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "&|()":
            out.append((ch, ch))
            i += 1
        elif ch == "+":
            i += 1
            start = i
            while i < len(text) and _ident_char(text[i]):
                i += 1
            if i == start:
                raise ValueError(f"tokenize: expected set name after '+' at position {start}")
            out.append(("ref", text[start:i]))
        elif _ident_char(ch):
            start = i
            while i < len(text) and _ident_char(text[i]):
                i += 1
            out.append(("ident", text[start:i]))
        else:
            raise ValueError(f"tokenize: unexpected character {ch!r} at position {i}")
    out.append(("eof", ""))
    return out


def parse(text: str) -> Node:
    """One expression to its tree; `ValueError` with llama-swap's message when it is not one."""
    text = text.strip()
    if not text:
        raise ValueError("empty DSL expression")
    tokens = _tokens(text)
    pos = 0

    def take() -> tuple[str, str]:
        nonlocal pos
        token = tokens[pos]
        if token[0] != "eof":
            pos += 1
        return token

    def alternatives() -> Node:
        first = conjunction()
        if tokens[pos][0] != "|":
            return first
        node = Node("or", children=[first])
        while tokens[pos][0] == "|":
            take()
            node.children.append(conjunction())
        return node

    def conjunction() -> Node:
        first = atom()
        if tokens[pos][0] != "&":
            return first
        node = Node("and", children=[first])
        while tokens[pos][0] == "&":
            take()
            node.children.append(atom())
        return node

    def atom() -> Node:
        kind, value = take()
        if kind == "ident":
            return Node("leaf", value)
        if kind == "ref":
            return Node("ref", value)
        if kind == "(":
            inner = alternatives()
            if take()[0] != ")":
                raise ValueError("parse: missing closing parenthesis")
            return inner
        raise ValueError(f"parse: unexpected token {_quote(value)}")

    root = alternatives()
    if tokens[pos][0] != "eof":
        raise ValueError(f"parse: unexpected token {_quote(tokens[pos][1])} after expression")
    return root


def _walk(node: Node) -> Iterable[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


# --- the compiled program -------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledSet:
    name: str
    dsl: str
    root: Node
    support: frozenset[str]  # every model the expression can mention


@dataclass(frozen=True)
class Decision:
    evict: tuple[str, ...]
    set_name: str  # "" when no set holds the target: it runs alone
    cost: int = 0


@dataclass(frozen=True)
class Program:
    """Sets in the order the solver tries them: dependencies first (a set inlined with `+ref`
    before the set that inlines it), otherwise definition order."""

    sets: tuple[CompiledSet, ...]

    @property
    def models(self) -> frozenset[str]:
        return frozenset().union(*(s.support for s in self.sets))

    def solve(self, target: str, running: Sequence[str], costs: Mapping[str, int]) -> Decision:
        """The set holding `target` that evicts the running models of least total cost (ties:
        the first set tried); a target in no set runs alone. `Program.Solve` in program.go."""
        if target in running:
            return Decision((), self.containing(running))
        bits = _bits([target, *running])
        projection = _Projection(bits)
        target_bit = bits[target]
        best_cost = -1
        best_set: CompiledSet | None = None
        best_mask = 0
        for compiled in self.sets:
            if target not in compiled.support:
                continue
            for mask in projection.states(compiled.root):
                if not mask & target_bit:
                    continue
                cost = sum(costs.get(m, 1) for m in running if not mask & bits[m])
                if best_cost < 0 or cost < best_cost:
                    best_cost, best_set, best_mask = cost, compiled, mask
        if best_set is None:
            return Decision(tuple(running), "")
        return Decision(tuple(m for m in running if not best_mask & bits[m]), best_set.name, best_cost)

    def containing(self, models: Sequence[str]) -> str:
        """The first set (in solver order) that allows all `models` together, or ""."""
        if not models:
            return ""
        bits = _bits(models)
        projection = _Projection(bits)
        required = sum(bits.values())
        for compiled in self.sets:
            if not compiled.support.issuperset(models):
                continue
            if any(required & ~mask == 0 for mask in projection.states(compiled.root)):
                return compiled.name
        return ""

    def can_contain_all(self, models: Sequence[str]) -> bool:
        return not models or self.containing(models) != ""


def _bits(models: Iterable[str]) -> dict[str, int]:
    bits: dict[str, int] = {}
    for model in models:
        bits.setdefault(model, 1 << len(bits))
    return bits


class _Projection:
    """Every concrete set an expression expands to, cut down to the models of one question and
    kept only where no other projection holds it (a superset is never worse: each relevant model
    is either the target or costs something to evict)."""

    def __init__(self, bits: Mapping[str, int]) -> None:
        self.bits = bits
        self.memo: dict[int, list[int]] = {}

    def states(self, node: Node) -> list[int]:
        found = self.memo.get(id(node))
        if found is not None:
            return found
        states: list[int] = []
        if node.kind == "leaf":
            states = [self.bits.get(node.name, 0)]
        elif node.kind == "ref":
            assert node.ref is not None
            states = self.states(node.ref)
        elif node.kind == "or":
            for child in node.children:
                for state in self.states(child):
                    states = _frontier(states, state)
        else:
            states = [0]
            for child in node.children:
                combined: list[int] = []
                right = self.states(child)
                for left in states:
                    for state in right:
                        combined = _frontier(combined, left | state)
                states = combined
        self.memo[id(node)] = states
        return states


def _frontier(states: list[int], candidate: int) -> list[int]:
    if any(candidate & ~state == 0 for state in states):
        return states
    return [s for s in states if s & ~candidate != 0] + [candidate]


def compile_sets(definitions: Mapping[str, str], resolve: Resolver) -> Program:
    """Parse, resolve and link the sets (`Compile`, program.go); raise `MatrixErrors` with every
    error in a set, and the first `+ref` cycle."""
    errors: list[MatrixError] = []
    if not definitions:
        raise MatrixErrors([MatrixError("matrix must define at least one set")])
    roots: dict[str, Node] = {}
    deps: dict[str, list[str]] = {}
    for name, dsl in definitions.items():
        try:
            root = parse(dsl)
        except ValueError as exc:
            errors.append(MatrixError(f"set {_quote(name)}: {exc}", name))
            continue
        refs: list[str] = []
        for node in _walk(root):
            if node.kind == "leaf":
                model = resolve(node.name)
                if model is None:
                    errors.append(
                        MatrixError(
                            f"set {_quote(name)}: unknown var or model {_quote(node.name)}", name, node.name
                        )
                    )
                else:
                    node.name = model
            elif node.kind == "ref":
                if node.name not in definitions:
                    errors.append(
                        MatrixError(
                            f"set {_quote(name)} references undefined set {_quote(node.name)}",
                            name,
                            node.name,
                        )
                    )
                elif node.name not in refs:
                    refs.append(node.name)
        roots[name] = root
        deps[name] = refs

    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 1:
            raise MatrixErrors(
                [MatrixError(f"circular reference detected involving set {_quote(name)}", name)]
            )
        if state.get(name) == 2:
            return
        state[name] = 1
        for dependency in deps.get(name, []):
            visit(dependency)
        state[name] = 2
        order.append(name)

    try:
        for name in definitions:
            visit(name)
    except MatrixErrors as cycle:  # the first cycle, as llama-swap reports it
        errors += cycle.errors
    if errors:
        raise MatrixErrors(errors)
    for root in roots.values():
        for node in _walk(root):
            if node.kind == "ref":
                node.ref = roots[node.name]

    memo: dict[int, frozenset[str]] = {}

    def support(node: Node) -> frozenset[str]:
        if id(node) not in memo:
            if node.kind == "leaf":
                memo[id(node)] = frozenset((node.name,))
            elif node.kind == "ref":
                assert node.ref is not None
                memo[id(node)] = support(node.ref)
            else:
                memo[id(node)] = frozenset().union(*(support(c) for c in node.children))
        return memo[id(node)]

    return Program(
        tuple(CompiledSet(name, definitions[name], roots[name], support(roots[name])) for name in order)
    )


class MatrixErrors(Exception):
    def __init__(self, errors: list[MatrixError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def identifiers(text: str) -> list[str]:
    """The model identifiers an expression names, in order; none when it does not tokenise."""
    try:
        return [value for kind, value in _tokens(text) if kind == "ident"]
    except ValueError:
        return []


def rename(text: str, names: Mapping[str, str]) -> str:
    """The expression with identifiers renamed (those not in `names` kept), written canonically;
    unchanged when it does not tokenise, so its error keeps its positions."""
    try:
        tokens = _tokens(text)
    except ValueError:
        return text
    spelled = {"&": " & ", "|": " | ", "(": "(", ")": ")", "eof": ""}
    return "".join(
        names.get(value, value) if kind == "ident" else f"+{value}" if kind == "ref" else spelled[kind]
        for kind, value in tokens
    )
