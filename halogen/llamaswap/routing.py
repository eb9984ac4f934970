"""Which models may run together, as a config says: the router it picks (`routing.router`, or the
legacy `groups`/`matrix`), its groups checked and closed, the matrix compiled into rules, and
the models' priorities (internal/config/config.go, internal/router/)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from halogen.llamaswap.config import Config, Group, Matrix
from halogen.llamaswap.matrix import MatrixErrors, compile_sets
from halogen.llamaswap.names import did_you_mean
from halogen.llamaswap.resolved import FieldPath, MatrixRules, Problem


def declared(
    config: Config,
) -> tuple[str, Mapping[str, Group], FieldPath, Matrix | None, FieldPath, list[Problem]]:
    """Which router runs, with its groups or matrix and where they were written. The legacy
    top-level `groups`/`matrix` and `routing.router` are two styles of one thing; a config uses
    one (`LoadConfigFromReader`, internal/config/load.go). `routing.scheduler` is no part of it."""
    problems: list[Problem] = []
    legacy = config.matrix is not None or bool(config.groups)
    router = config.routing.router
    settings = router.settings
    if legacy and (router.use != "" or settings.matrix is not None or bool(settings.groups)):
        problems.append(
            Problem(
                ("routing", "router"),
                "config uses both the legacy top-level 'matrix'/'groups' keys and the new 'routing.router' block",
                "move the top-level keys into routing.router and remove them",
            )
        )
    base: FieldPath = ("routing", "router", "settings")
    if legacy:
        if config.matrix is not None and config.groups:
            problems.append(
                Problem(("matrix",), "config cannot use both 'groups' and 'matrix'", "keep one of them")
            )
            return "group", config.groups, ("groups",), None, ("matrix",), problems
        if config.matrix is not None:
            return "matrix", {}, ("groups",), config.matrix, ("matrix",), problems
        return "group", config.groups, ("groups",), None, ("matrix",), problems
    if router.use == "matrix":
        if settings.matrix is None:
            problems.append(
                Problem(
                    ("routing", "router", "use"),
                    "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
                )
            )
            return "group", {}, (*base, "groups"), None, (*base, "matrix"), problems
        return "matrix", {}, (*base, "groups"), settings.matrix, (*base, "matrix"), problems
    if router.use not in ("group", ""):
        problems.append(
            Problem(
                ("routing", "router", "use"),
                f"routing.router.use: unknown router {router.use!r}",
                "use group or matrix",
            )
        )
    # A matrix beside `use: group` is not in use, so it is not checked (as llama-swap).
    return "group", settings.groups, (*base, "groups"), None, (*base, "matrix"), problems


def check_groups(
    config: Config, groups: Mapping[str, Group], path: FieldPath, problems: list[Problem]
) -> dict[str, str]:
    """Each model's group; a member listed twice, in two groups, or not defined is a problem."""
    member_of: dict[str, str] = {}
    for gid, group in sorted(groups.items()):
        seen: set[str] = set()
        for i, member in enumerate(group.members):
            where: FieldPath = (*path, gid, "members", i)
            if member in seen:
                problems.append(Problem(where, f"model {member!r} is listed twice in group {gid!r}"))
            elif member in member_of:
                problems.append(
                    Problem(
                        where,
                        f"model {member!r} is in groups {member_of[member]!r} and {gid!r}",
                        "a model belongs to at most one group",
                    )
                )
            elif member not in config.models:
                problems.append(
                    Problem(
                        where,
                        f"group {gid!r} names model {member!r}, which is not defined",
                        did_you_mean(member, config.models),
                    )
                )
            seen.add(member)
            member_of.setdefault(member, gid)
    return member_of


VAR_KEY = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")
"""What llama-swap's loader accepts as a matrix var (`varKeyPattern`, internal/config/matrix.go);
its JSON Schema is stricter (1-8 letters and digits), which is what halogen writes."""


def matrix_rules(
    config: Config, matrix: Matrix, path: FieldPath, problems: list[Problem]
) -> MatrixRules | None:
    """`ValidateMatrix` (internal/config/matrix.go): vars name model ids (never aliases), evict
    costs are positive and name a var or a model, sets compile. A var shadows a model id."""
    found: list[Problem] = []
    for key, model in matrix.vars.items():
        where: FieldPath = (*path, "vars", key)
        if not VAR_KEY.match(key):
            found.append(
                Problem(
                    where,
                    f"var key {key!r} must contain only alphanumeric, '-' or '.' characters "
                    "and be 1-32 characters long",
                )
            )
        elif model not in config.models:
            found.append(
                Problem(
                    where,
                    f"var key {key!r} references unknown model {model!r}",
                    did_you_mean(model, config.models) or "vars name model ids, not aliases",
                )
            )

    def lookup(ident: str) -> str | None:
        if ident in matrix.vars:
            return matrix.vars[ident]
        return ident if ident in config.models else None

    for key, cost in matrix.evict_costs.items():
        where = (*path, "evict_costs", key)
        if cost <= 0:
            found.append(Problem(where, f"evict_cost for {key!r} must be a positive integer, got {cost}"))
        elif lookup(key) is None:
            found.append(
                Problem(
                    where,
                    f"evict_costs: unknown var or model {key!r}",
                    did_you_mean(key, config.models) or did_you_mean(key, matrix.vars),
                )
            )
    program = None
    try:
        program = compile_sets(matrix.sets, lookup)
    except MatrixErrors as exc:
        for error in exc.errors:
            hint = ""
            if error.ident and "undefined set" in error.message:
                hint = did_you_mean(error.ident, matrix.sets)
            elif error.ident:
                hint = did_you_mean(error.ident, config.models) or did_you_mean(error.ident, matrix.vars)
            found.append(
                Problem(
                    (*path, "sets", error.set_name) if error.set_name else (*path, "sets"),
                    error.message,
                    hint,
                )
            )
    problems += found
    if found or program is None:
        return None
    costs = {matrix.vars.get(key, key): cost for key, cost in matrix.evict_costs.items()}
    return MatrixRules(program, costs)


def priorities(config: Config, aliases: Mapping[str, str], problems: list[Problem]) -> dict[str, int]:
    scheduler = config.routing.scheduler
    if scheduler.use not in ("", "fifo"):
        problems.append(
            Problem(
                ("routing", "scheduler", "use"),
                f"routing.scheduler.use: unknown scheduler {scheduler.use!r}",
                "the one scheduler is fifo",
            )
        )
    priority: dict[str, int] = {}
    for key, value in scheduler.settings.fifo.priority.items():
        model = key if key in config.models else aliases.get(key)
        if model is None:
            problems.append(
                Problem(
                    ("routing", "scheduler", "settings", "fifo", "priority", key),
                    f"routing.scheduler.settings.fifo.priority references unknown model {key!r}",
                    did_you_mean(key, [*config.models, *aliases]),
                )
            )
        elif key == model or model not in priority:
            priority[model] = value
    return priority
