"""The eviction rule of the llama-swap config contract, as a pure function."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from halogen.llamaswap.config import Group
from halogen.llamaswap.resolve import Runnable


def to_stop(
    target: str,
    running: Iterable[str],
    models: Mapping[str, Runnable],
    groups: Mapping[str, Group],
) -> set[str]:
    """The running models to stop before `target` may run.

    For every other running model M: same group with `swap` → stop; a different group while
    the target's group is `exclusive` → stop unless M's group is `persistent`; else keep.
    """
    # A group missing from `groups` gets llama-swap's defaults (swap, exclusive, not
    # persistent), which are also the rules of the implicit (default) group.
    target_group = models[target].group
    target_rules = groups.get(target_group, Group())
    stop = set()
    for other in running:
        if other == target or other not in models:
            continue
        other_group = models[other].group
        if other_group == target_group:
            if target_rules.swap:
                stop.add(other)
        elif target_rules.exclusive:
            other_rules = groups.get(other_group, Group())
            if not other_rules.persistent:
                stop.add(other)
    return stop
