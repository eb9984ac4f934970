"""Where the halogen image keeps things: the contract between the Containerfile and the manifests.

The Containerfile cannot import Python, so it repeats these values; tests/image/ fails when the
two disagree. The Deployment's rendering reads them from here.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

CONFIG_DIR: Final = "/etc/halogen"
"""The ConfigMap is mounted here as a directory (not with subPath, which never updates)."""
CONFIG_FILE: Final = "config.yaml"
"""The ConfigMap's one key, so the file's name in CONFIG_DIR and in out/."""
CONFIG_PATH: Final = f"{CONFIG_DIR}/{CONFIG_FILE}"
PORT: Final = 8080
PORT_NAME: Final = "http"
MODELS_DIR: Final = "/models"
"""Models are mounted read-only here; every `-m` path must lie under it."""
VENV: Final = "/opt/halogen"
USER_ID: Final = 10001
"""Numeric, so that the pod's `runAsNonRoot` can check it without an /etc/passwd lookup."""

BaseKind = Literal["rocm", "vulkan"]
LLAMA_SERVER: Final[Mapping[BaseKind, str]] = MappingProxyType(
    {
        # The kyuz0 ROCm toolboxes install llama.cpp with the default prefix, the Vulkan ones
        # with CMAKE_INSTALL_PREFIX=/usr.
        "rocm": "/usr/local/bin/llama-server",
        "vulkan": "/usr/bin/llama-server",
    }
)

RPC_SERVER: Final = "/usr/local/bin/rpc-server"
"""llama.cpp's tools/rpc server from the base's own build, linked here by the Containerfile: what
a split model's helper node runs."""

PRESTOP_SECONDS: Final = 5
"""The pod sleeps this long before SIGTERM, so that the Service stops sending it requests first."""
SHUTDOWN_MARGIN: Final = 5
"""What the shutdown needs after the drain, besides the models' unloadTimeout."""


def shutdown_seconds(unload_timeout: int) -> int:
    """The part of the pod's grace period that is not the drain: the preStop sleep, stopping
    the models (at most `unloadTimeout`, then SIGKILL) and the margin."""
    return PRESTOP_SECONDS + unload_timeout + SHUTDOWN_MARGIN


ENTRYPOINT: Final = ("halogen", "serve")


def service_names(name: str, namespace: str) -> list[str]:
    """The names a Service is reached by in the cluster's DNS (with the default cluster domain;
    another goes in `allowHosts`)."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def serve_args(config_path: str = CONFIG_PATH, port: int = PORT) -> list[str]:
    """The arguments after ENTRYPOINT; with the defaults, the image's CMD."""
    return ["--config", config_path, "--listen", f"0.0.0.0:{port}"]


def serve_command(
    config_path: str = CONFIG_PATH,
    port: int = PORT,
    drain: int = 0,
    allow_origins: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
) -> list[str]:
    """The container's full argv: what the Deployment sets as `command` (with the seconds the
    requests in flight get on SIGTERM, when any, the host names the proxy answers to besides its
    own, and the web origins allowed)."""
    hosts = [arg for host in allow_hosts for arg in ("--allow-host", host)]
    origins = [arg for origin in allow_origins for arg in ("--allow-origin", origin)]
    return [
        *ENTRYPOINT,
        *serve_args(config_path, port),
        *hosts,
        *origins,
        *(["--drain", str(drain)] if drain > 0 else []),
    ]
