"""The names that choose among models: selectors (a name a request gives, and the models that may
answer it, with spill-over to the ones already running beside it) and profiles (a name that
pins a set of models), as llama-swap checks them at load (internal/config/config.go,
internal/server/selector.go)."""

from __future__ import annotations

from collections.abc import Mapping

from halogen.llamaswap.config import Config, Group
from halogen.llamaswap.names import did_you_mean
from halogen.llamaswap.resolved import (
    STRATEGIES,
    FieldPath,
    MatrixRules,
    PeerRoute,
    Problem,
    ProfileRule,
    SelectorRule,
    peer_fqn,
)


def selector_rules(
    config: Config,
    aliases: Mapping[str, str],
    peers: Mapping[str, PeerRoute],
    groups: Mapping[str, Group],
    matrix: MatrixRules | None,
    problems: list[Problem],
) -> dict[str, SelectorRule]:
    """`validateSelectors` (internal/config/selectors.go)."""
    rules: dict[str, SelectorRule] = {}
    names = [*config.models, *aliases]
    for sid, selector in config.selectors.items():
        where: FieldPath = ("selectors", sid)
        found: list[Problem] = []
        if not sid.strip():
            found.append(Problem(where, "selector names cannot be empty"))
        elif sid in config.models:
            found.append(Problem(where, f"name conflicts with model ID {sid!r}", "rename the selector"))
        elif sid in aliases:
            found.append(
                Problem(
                    where,
                    f"name conflicts with model alias {sid!r}",
                    f"an alias of {aliases[sid]!r}: rename the selector",
                )
            )
        if selector.strategy == "":
            found.append(Problem((*where, "strategy"), "strategy is required", "use warm, pin or spillover"))
        elif selector.strategy not in STRATEGIES:
            found.append(
                Problem(
                    (*where, "strategy"),
                    f"unknown strategy {selector.strategy!r}",
                    "use warm, pin or spillover",
                )
            )
        if not selector.targets:
            found.append(Problem((*where, "targets"), "targets must contain at least one entry"))
        models: list[str] = []
        remote: list[str] = []  # a peer's models among the targets, by `<peer>/<model>`
        for i, target in enumerate(selector.targets):
            model = target if target in config.models else aliases.get(target)
            peer = peers.get(target) if model is None else None
            if target in config.selectors:
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f"references selector {target!r}; selector chaining is not supported",
                    )
                )
            elif model is None and peer is None:
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f"references unknown model {target!r}",
                        did_you_mean(target, [*names, *peers]),
                    )
                )
            elif peer is not None and selector.strategy == "warm":
                # warm asks which target is loaded, which only a local model can say.
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f'must resolve to a local model for strategy "warm": {target!r} is a peer\'s',
                        "use pin or spillover, or a local model",
                    )
                )
            elif peer is not None:
                models.append(peer_fqn(peer.peer, peer.model))
                remote.append(models[-1])
            elif model is not None:
                models.append(model)
        if selector.strategy == "spillover" and not found:
            if selector.settings.spillover < 1:
                found.append(Problem((*where, "settings", "spillover"), "settings.spillover must be >= 1"))
            seen: set[str] = set()
            for model in models:
                if model in seen:
                    found.append(
                        Problem((*where, "targets"), f"targets contains duplicate resolved model {model!r}")
                    )
                seen.add(model)
            if not found:
                local = [model for model in models if model not in remote]
                found += _spillover_together(sid, local, groups, matrix)
        problems += found
        if not found:
            rules[sid] = SelectorRule(
                id=sid,
                strategy=selector.strategy,
                targets=tuple(selector.targets),
                models=tuple(models),
                peers=frozenset(remote),
                spillover=selector.settings.spillover,
                name=selector.name,
                description=selector.description,
                unlisted=selector.unlisted,
                metadata=dict(selector.metadata),
            )
    return rules


def _spillover_together(
    sid: str, models: list[str], groups: Mapping[str, Group], matrix: MatrixRules | None
) -> list[Problem]:
    """Spillover targets must be able to run at once (`validateSpilloverCoexistence`)."""
    where: FieldPath = ("selectors", sid, "targets")
    if len(models) <= 1:
        return []
    if matrix is not None:
        if matrix.program.can_contain_all(models):
            return []
        return [Problem(where, "spillover targets must all appear together in one expanded matrix set")]
    group_of = {member: gid for gid, group in groups.items() for member in group.members}
    gid = group_of.get(models[0], "")
    if not gid:
        return [Problem(where, f"spillover target {models[0]!r} is not in a routing group")]
    if groups[gid].swap:
        return [Problem(where, "spillover targets must share a group with swap: false")]
    if any(group_of.get(m) != gid for m in models[1:]):
        return [Problem(where, "spillover targets must share one routing group")]
    return []


def profile_rules(
    config: Config, aliases: Mapping[str, str], problems: list[Problem]
) -> dict[str, ProfileRule]:
    """`validateProfiles` (internal/config/load.go): a pin names a model, an alias or a
    selector; null or "" disables its id."""
    rules: dict[str, ProfileRule] = {}
    names = [*config.models, *aliases, *config.selectors]
    for pid, profile in config.profiles.items():
        where: FieldPath = ("profiles", pid)
        found: list[Problem] = []
        if not pid.strip():
            found.append(Problem(where, "profile names cannot be empty"))
        if not profile.pins:
            found.append(Problem((*where, "pins"), "pins must contain at least one entry"))
        pins: dict[str, str] = {}
        for pin, target in profile.pins.items():
            if not pin.strip():
                found.append(Problem((*where, "pins", pin), "pin names cannot be empty"))
            elif (
                target
                and target not in config.models
                and target not in aliases
                and target not in config.selectors
            ):
                found.append(
                    Problem(
                        (*where, "pins", pin),
                        f"references unknown model {target!r}",
                        did_you_mean(target, names)
                        or "pin a model, an alias or a selector, or ~ to disable the id",
                    )
                )
            pins[pin] = target or ""
        problems += found
        if not found:
            rules[pid] = ProfileRule(pid, profile.description, pins)
    return rules
