"""The llama-swap config as typed data, the one model both halves of halogen use.

Field names are llama-swap's own (camelCase), so a dump is the file. Defaults are llama-swap's
defaults, so dumping with `exclude_defaults` never writes a key that does nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MacroValue = str | int | float | bool

DEFAULT_GROUP = "(default)"
MIN_HEALTH_CHECK_TIMEOUT = 15
"""llama-swap waits at least this many seconds for a model to become healthy."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filters(_Strict):
    stripParams: str = Field("", pattern=r"^[a-zA-Z0-9_, ]*$")
    setParams: dict[str, Any] = {}
    # Requested id (the model's own or a new alias) -> params set after setParams
    # (internal/config/filters.go, llama-swap); every key but the model's id becomes an alias.
    setParamsByID: dict[str, dict[str, Any]] = {}


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


class OnStartup(_Strict):
    preload: list[str] = []


class Hooks(_Strict):
    on_startup: OnStartup = OnStartup()


class Config(_Strict):
    healthCheckTimeout: int = 120
    logLevel: Literal["debug", "info", "warn", "error"] = "info"
    logToStdout: Literal["proxy", "upstream", "both", "none"] = "proxy"
    metricsMaxInMemory: int = Field(1000, ge=1)
    startPort: int = Field(5800, ge=1, le=65535)
    globalTTL: int = Field(0, ge=0)
    unloadTimeout: int = Field(10, ge=0)
    includeAliasesInList: bool = False
    sendLoadingState: bool = False
    apiKeys: list[str] = []
    macros: dict[str, MacroValue] = {}
    models: dict[str, Model]
    groups: dict[str, Group] = {}
    hooks: Hooks = Hooks()

    def document(self) -> dict[str, Any]:
        """The config as llama-swap YAML data: only what differs from llama-swap's defaults,
        with every group's `members` kept."""
        data = self.model_dump(mode="json", exclude_defaults=True)  # `models` has no default: always there
        if self.groups:
            data["groups"] = {
                gid: {**group.model_dump(mode="json", exclude_defaults=True), "members": list(group.members)}
                for gid, group in self.groups.items()
            }
        return data


# Keys llama-swap knows that `halogen serve` does not implement. A hand-written config that
# sets one (to anything but its default) is refused with the key's name, never half-run.
UNSUPPORTED_TOP: dict[str, Any] = {
    "logTimeFormat": "",
    "captureBuffer": 5,
    "store": None,
    "ui": None,
    "performance": None,
    "profiles": None,
    "selectors": None,
    "matrix": None,
    "peers": None,
    "upstream": None,
    "routing": None,
}
UNSUPPORTED_MODEL: dict[str, Any] = {
    "timeouts": None,
    "compat": None,
    "capabilities": None,
}
UNSUPPORTED_FILTERS: dict[str, Any] = {}
