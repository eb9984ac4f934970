"""What a resolved llama-swap config is: the records `halogen serve` runs from.

`resolve.resolve` builds them from a `Config` (llama-swap's load-time rules); the runtime, the
importer and the compiler read them. Names follow llama-swap's where it has them
(internal/config/config.go: ModelConfig -> Runnable, PeerConfig -> PeerRoute).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from halogen.llamaswap import names
from halogen.llamaswap.config import Capabilities, Group, Timeouts
from halogen.llamaswap.matrix import Program

RESERVED = ("PORT", "MODEL_ID", "PID")  # the macros the runtime fills in itself
DEFAULT_CONCURRENCY = 10

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: FieldPath
    message: str
    hint: str = ""


class Unresolvable(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in problems))


@dataclass(frozen=True)
class Runnable:
    """One model as `halogen serve` runs it."""

    id: str
    argv: tuple[str, ...]
    stop_argv: tuple[str, ...]  # may hold ${PID}; empty = signal the process group
    proxy: str
    check_endpoint: str  # "" = ready at spawn
    env: tuple[tuple[str, str], ...]
    group: str
    aliases: tuple[str, ...] = ()
    unlisted: bool = False
    ttl: int = 0  # seconds idle before unload; 0 = never
    unload_timeout: int = 10
    use_model_name: str = ""
    concurrency_limit: int = DEFAULT_CONCURRENCY
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    # The requested id (the model's own or an alias) -> params set after `set_params`.
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    send_loading_state: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    ignore_websockets: bool = False
    capabilities: Capabilities = field(default_factory=Capabilities)
    name: str = ""
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Where `halogen pull` fetches the model's file (the site's `source`), "" when the site gives
    # none, None when the config alone does not say (it does not record sources).
    source: str | None = None


@dataclass(frozen=True)
class MatrixRules:
    """A compiled matrix: the sets in the order the solver tries them, and what evicting each
    running model costs (vars resolved; a model not listed costs 1)."""

    program: Program
    evict_costs: Mapping[str, int]


STRATEGIES = ("warm", "pin", "spillover")


@dataclass(frozen=True)
class SelectorRule:
    """A selector id: which of `targets` serves is chosen per request by `strategy`."""

    id: str
    strategy: str  # warm | pin | spillover
    targets: tuple[str, ...]  # as written: model ids or aliases, in order
    models: tuple[str, ...]  # the model id each target names (`<peer>/<model>` for a peer's)
    spillover: int = 1  # requests reserved per active target before the next one starts
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    peers: frozenset[str] = frozenset()  # those of `models` that are a peer's models


@dataclass(frozen=True)
class ProfileRule:
    """Ids rewritten while the profile is active; a pin to "" disables its id."""

    id: str
    description: str
    pins: Mapping[str, str]


@dataclass(frozen=True)
class PeerRoute:
    """A model another server offers (`peers:`), and how to reach it."""

    peer: str
    model: str  # the id the peer knows it by
    proxy: str  # the peer's base URL, without a trailing "/"
    api_key: str
    strip_params: tuple[str, ...]
    set_params: Mapping[str, Any]
    timeouts: Timeouts


def peer_fqn(peer: str, model: str) -> str:
    """The qualified name of a peer's model, as PeerModelFQN (internal/config/peer.go)."""
    return f"{peer}/{model}"


# internal/config/upstream.go (llama-swap): static assets a UI asks for.
DEFAULT_IGNORE_PATHS = r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"


@dataclass(frozen=True)
class Resolved:
    models: dict[str, Runnable]
    groups: dict[str, Group]  # the implicit (default) group included when it has members
    aliases: dict[str, str]
    preload: tuple[str, ...]
    api_keys: tuple[str, ...]
    health_check_timeout: int
    log_level: str
    log_to_stdout: str
    metrics_max: int
    include_aliases_in_list: bool
    # Values the config took from `${env.NAME}` (value -> NAME): never shown.
    secrets: Mapping[str, str] = field(default_factory=dict)
    router: str = "group"  # group | matrix
    matrix: MatrixRules | None = None  # set when router is "matrix"
    priority: Mapping[str, int] = field(default_factory=dict)  # fifo priority per model id; default 0
    selectors: Mapping[str, SelectorRule] = field(default_factory=dict)
    profiles: Mapping[str, ProfileRule] = field(default_factory=dict)
    # /upstream paths that never start a model (upstream.ignorePaths, internal/config/upstream.go).
    upstream_ignore_paths: tuple[re.Pattern[str], ...] = (re.compile(DEFAULT_IGNORE_PATHS),)
    # Each qualified `<peer>/<model>` name, and each bare model name exactly one peer offers.
    peers: Mapping[str, PeerRoute] = field(default_factory=dict)
    peer_names: tuple[str, ...] = ()  # the qualified names, for listings
    log_time_format: str = ""
    # The sha256 (hex) of the config file's bytes as read: `halogen build`'s config-version.
    config_version: str = ""
    # llama-swap's UI side: captureBuffer (MB; 0 = no captures), store.path ("" = in memory),
    # ui.activity.session_id, performance.every (seconds; 0 = performance.disabled).
    capture_mb: int = 5
    store_path: str = ""
    session_headers: tuple[str, ...] = ("X-Session-ID", "X-Litellm-Session-Id")
    performance_every: float = 5.0

    def peer(self, name: str) -> PeerRoute | None:
        """The peer model a request names, when no local model answers to the name."""
        if self.lookup(name) is not None:
            return None
        for candidate in names.spellings(name):
            if candidate in self.peers:
                return self.peers[candidate]
        return None

    def lookup(self, name: str) -> str | None:
        """The model id a request's `model` names: an id, an alias, or either with `:latest`."""
        for candidate in names.spellings(name):
            if candidate in self.models:
                return candidate
            if candidate in self.aliases:
                return self.aliases[candidate]
        return None
