"""The llama-swap config as typed data, the one model both halves of halogen use.

Field names are llama-swap's own (camelCase), so a dump is the file. Defaults are llama-swap's
defaults, so dumping with `exclude_defaults` never writes a key that does nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MacroValue = str | int | float | bool

DEFAULT_GROUP = "(default)"
MIN_HEALTH_CHECK_TIMEOUT = 15
"""llama-swap waits at least this many seconds for a model to become healthy."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Filters(_Strict):
    stripParams: str = Field("", pattern=r"^[a-zA-Z0-9_, ]*$")
    setParams: dict[str, Any] = {}
    # Requested id (the model's own or a new alias) -> params set after setParams
    # (internal/config/filters.go, llama-swap); every key but the model's id becomes an alias.
    setParamsByID: dict[str, dict[str, Any]] = {}


class Timeouts(_Strict):
    """Seconds for the connections to a model's server; 0 = no limit. Defaults as llama-swap's
    (internal/config/model_config.go)."""

    connect: int = Field(30, ge=0)
    keepalive: int = Field(30, ge=0)
    responseHeader: int = Field(0, ge=0)
    tlsHandshake: int = Field(10, ge=0)
    expectContinue: int = Field(1, ge=0)
    idleConn: int = Field(90, ge=0)


class Compat(_Strict):
    ignoreWebsockets: bool = False


Modality = Literal["text", "audio", "image"]


class Capabilities(_Strict):
    """What the model takes and gives, for /v1/models (internal/server/api.go); all empty =
    not configured."""

    in_: list[Modality] = Field([], alias="in")
    out: list[Modality] = []
    tools: bool = False
    reranker: bool = False
    context: int = Field(0, ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    def empty(self) -> bool:
        return not (self.in_ or self.out or self.tools or self.reranker or self.context)


class Upstream(_Strict):
    # None or empty: llama-swap's default, static-asset suffixes (internal/config/upstream.go).
    ignorePaths: list[str] | None = None


class PeerFilters(_Strict):
    stripParams: str = Field("", pattern=r"^[a-zA-Z0-9_, ]*$")
    setParams: dict[str, Any] = {}


class PeerTimeouts(Timeouts):
    # A peer waits 60 s for response headers by default (internal/config/peer.go).
    responseHeader: int = Field(60, ge=0)


class Peer(_Strict):
    """Another server's models, reachable through this one (internal/config/peer.go)."""

    proxy: str = Field(min_length=1)
    apiKey: str = ""
    models: list[str] = Field(min_length=1)
    filters: PeerFilters = PeerFilters()
    timeouts: PeerTimeouts = PeerTimeouts()


class Model(_Strict):
    """One entry under `models:`; `cmd` may still hold macros until `resolve` runs."""

    cmd: str = Field(min_length=1)
    cmdStop: str = ""
    proxy: str = "http://localhost:${PORT}"
    checkEndpoint: str = Field("/health", pattern=r"^/.*$|^none$")
    env: list[str] = []
    aliases: list[str] = []
    unlisted: bool = False
    ttl: int | None = Field(None, ge=-1)
    unloadTimeout: int = Field(0, ge=0)
    useModelName: str = ""
    concurrencyLimit: int = Field(0, ge=0)
    filters: Filters = Filters()
    # None: the global sendLoadingState (internal/config/load.go, llama-swap).
    sendLoadingState: bool | None = None
    timeouts: Timeouts = Timeouts()
    compat: Compat = Compat()
    capabilities: Capabilities = Capabilities()
    name: str = Field("", max_length=128)
    description: str = Field("", max_length=1024)
    metadata: dict[str, Any] = {}
    macros: dict[str, MacroValue] = {}


class Group(_Strict):
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    # Written even when empty: llama-swap's schema requires the key.
    members: list[str] = []


class Matrix(_Strict):
    """A swap matrix (`internal/config/matrix.go`): which models may run together, and what
    losing each running one costs. Checked only when the router in use is the matrix."""

    vars: dict[str, str] = {}
    evict_costs: dict[str, int] = {}
    sets: dict[str, str] = {}  # definition order breaks ties


class RouterSettings(_Strict):
    groups: dict[str, Group] = {}
    matrix: Matrix | None = None


class Router(_Strict):
    use: str = ""  # "" = group; other values are refused at resolve with llama-swap's message
    settings: RouterSettings = RouterSettings()


class Fifo(_Strict):
    priority: dict[str, int] = {}


class SchedulerSettings(_Strict):
    fifo: Fifo = Fifo()


class Scheduler(_Strict):
    use: str = ""  # "" = fifo
    settings: SchedulerSettings = SchedulerSettings()


class Routing(_Strict):
    scheduler: Scheduler = Scheduler()
    router: Router = Router()


class SelectorSettings(_Strict):
    spillover: int = 1


class Selector(_Strict):
    """A virtual model id resolved to one of `targets` per request (`internal/config/selectors.go`)."""

    strategy: str = ""
    targets: list[str] = []
    settings: SelectorSettings = SelectorSettings()
    name: str = Field("", max_length=128)
    description: str = Field("", max_length=1024)
    unlisted: bool = False
    metadata: dict[str, Any] = {}


class Profile(_Strict):
    """Model ids rewritten while the profile is active; a null or empty pin disables the id."""

    description: str = Field("", max_length=1024)
    pins: dict[str, str | None] = {}

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                "profile must be a mapping with description and pins; "
                "the legacy list syntax is no longer supported"
            )
        return data


class OnStartup(_Strict):
    preload: list[str] = []


class Hooks(_Strict):
    on_startup: OnStartup = OnStartup()


# A Go duration as llama-swap's config-schema.json spells one: decimal numbers with a unit each
# ("1m30s", "1.5h"); Go's time.ParseDuration reads each the same.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATION_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(text: str) -> float:
    """Seconds in a Go duration string; ValueError when it is not one."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in ("+", "-") else body
    total, at = 0.0, 0
    for part in _DURATION_PART.finditer(body):
        if part.start() != at:
            break
        total += float(part.group(1)) * _DURATION_UNIT[part.group(2)]
        at = part.end()
    if not body or at != len(body):
        raise ValueError(f"{text!r} is not a duration (a number and a unit: 5s, 1m30s, 500ms)")
    return sign * total


class Store(_Strict):
    """Where activity is kept across restarts (Store in internal/config/config.go)."""

    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("store.path must not be empty")
        return value


# The request headers the Activity page groups sessions by (load.go, llama-swap).
DEFAULT_SESSION_HEADERS = ("X-Session-ID", "X-Litellm-Session-Id")


class UiActivity(_Strict):
    session_id: list[str] = list(DEFAULT_SESSION_HEADERS)

    @field_validator("session_id")
    @classmethod
    def _normalized(cls, names: list[str]) -> list[str]:
        """normalizeHeaderNames (internal/config/load.go, llama-swap): trimmed, blanks dropped,
        the first of each case-insensitive name kept; an empty list turns the lookup off."""
        out: list[str] = []
        seen: set[str] = set()
        for name in names:
            name = name.strip()
            if name and name.lower() not in seen:
                seen.add(name.lower())
                out.append(name)
        return out


class Ui(_Strict):
    activity: UiActivity = UiActivity()


# performance.every: llama-swap's default and its floor (internal/config/performance.go).
PERFORMANCE_EVERY = "5s"
MIN_PERFORMANCE_SECONDS = 5.0


class Performance(_Strict):
    disabled: bool = False
    every: str = PERFORMANCE_EVERY

    @field_validator("every")
    @classmethod
    def _at_least(cls, every: str) -> str:
        if go_seconds(every) < MIN_PERFORMANCE_SECONDS:
            raise ValueError(f"every must be at least 5s, got {every}")
        return every

    @property
    def seconds(self) -> float:
        return go_seconds(self.every)


# Go's time layouts by their constant names (internal/logmon/logging.go, llama-swap).
LogTimeFormat = Literal[
    "",
    "ansic",
    "unixdate",
    "rubydate",
    "rfc822",
    "rfc822z",
    "rfc850",
    "rfc1123",
    "rfc1123z",
    "rfc3339",
    "rfc3339nano",
    "kitchen",
    "stamp",
    "stampmilli",
    "stampmicro",
    "stampnano",
]


class Config(_Strict):
    healthCheckTimeout: int = 120
    logLevel: Literal["debug", "info", "warn", "error"] = "info"
    logToStdout: Literal["proxy", "upstream", "both", "none"] = "proxy"
    metricsMaxInMemory: int = Field(1000, ge=1)
    captureBuffer: int = Field(5, ge=0)  # MB of request/response captures; 0 = none
    store: Store | None = None
    ui: Ui = Ui()
    performance: Performance = Performance()
    startPort: int = Field(5800, ge=1, le=65535)
    globalTTL: int = Field(0, ge=0)
    unloadTimeout: int = Field(10, ge=0)
    includeAliasesInList: bool = False
    sendLoadingState: bool = False
    logTimeFormat: LogTimeFormat = ""
    upstream: Upstream = Upstream()
    peers: dict[str, Peer] = {}
    apiKeys: list[str] = []
    macros: dict[str, MacroValue] = {}
    models: dict[str, Model]
    groups: dict[str, Group] = {}  # the legacy style of routing.router.settings.groups
    matrix: Matrix | None = None  # the legacy style of routing.router.settings.matrix
    routing: Routing = Routing()
    selectors: dict[str, Selector] = {}
    profiles: dict[str, Profile] = {}
    hooks: Hooks = Hooks()

    def document(self) -> dict[str, Any]:
        """The config as llama-swap YAML data: only what differs from llama-swap's defaults,
        with every group's `members` kept."""
        data = self.model_dump(mode="json", exclude_defaults=True)  # `models` has no default: always there
        if self.groups:
            data["groups"] = _groups(self.groups)
        groups = self.routing.router.settings.groups
        if groups:
            data["routing"]["router"]["settings"]["groups"] = _groups(groups)
        return data


def _groups(groups: dict[str, Group]) -> dict[str, Any]:
    return {
        gid: {**group.model_dump(mode="json", exclude_defaults=True), "members": list(group.members)}
        for gid, group in groups.items()
    }


# Keys llama-swap knows that `halogen serve` does not implement. A hand-written config that
# sets one (to anything but its default) is refused with the key's name, never half-run.
UNSUPPORTED_TOP: dict[str, Any] = {}
UNSUPPORTED_MODEL: dict[str, Any] = {}
UNSUPPORTED_FILTERS: dict[str, Any] = {}
