"""The input files as pydantic models. Unknown keys are errors (with did-you-mean hints);
the JSON Schemas in `schemas/` are generated from these classes."""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from halogen import __version__
from halogen.image import LLAMA_SERVER, MODELS_DIR, PORT, USER_ID
from halogen.llamaswap import config as ls
from halogen.llamaswap.config import MIN_HEALTH_CHECK_TIMEOUT
from halogen.modelfiles import is_commit
from halogen.patterns import (
    ALLOWED_HOST,
    BACKEND_ID,
    DEVICE,
    ENV_NAME,
    EXTENDED_RESOURCE,
    LABEL_KEY,
    LABEL_VALUE,
    MACRO_NAME,
    NO_NUL,
    ONE_LINE,
    PROMETHEUS_DURATION,
    QUANTITY,
)

DEFAULT_IMAGE = "ghcr.io/halogen-project/halogen"
K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MIN_KUBERNETES_MINOR = 30
# The GPU resources device plugins advertise (AMD, NVIDIA, Intel): a near miss is a typo.
GPU_RESOURCES = ("amd.com/gpu", "nvidia.com/gpu", "gpu.intel.com/i915", "gpu.intel.com/xe")

OneLine = Annotated[str, StringConstraints(pattern=ONE_LINE)]
Arg = Annotated[str, StringConstraints(pattern=ONE_LINE, min_length=1)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]
# A Kubernetes quantity: "32Gi", "500m", or a whole number (amd.com/gpu: 1).
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY)] | Annotated[int, Field(ge=0)]
Capability = Literal["completion", "tools", "insert", "vision", "embedding", "thinking"]
# No NUL in what becomes part of a command line: no argv can hold one.
NoNul = Annotated[str, StringConstraints(pattern=NO_NUL)]
MacroValue = Annotated[str, StringConstraints(max_length=1023, pattern=NO_NUL)] | int | float | bool


class _Input(BaseModel):
    # Strict: YAML says what type a value is, so `contextSize: true` is an error, not 1.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class Image(_Input):
    """The proxy's image. The default is this project's image at the package version."""

    repository: OneLine = DEFAULT_IMAGE
    tag: Annotated[str, StringConstraints(pattern=r"^[\w][\w.-]{0,127}$")] | None = None
    digest: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    pullPolicy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    base: Literal["rocm", "vulkan", "custom"] = Field(
        "rocm",
        description="The kind of toolbox the image is built on, which decides where llama-server is "
        "(rocm: /usr/local/bin, vulkan: /usr/bin); custom: no check.",
    )

    @model_validator(mode="after")
    def _pinned(self) -> Image:
        if self.tag == "latest":
            raise ValueError("tag 'latest' is not allowed: pin a version or a digest")
        return self

    @property
    def reference(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or __version__}"


class Resources(_Input):
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}


class Pull(_Input):
    """The Job that fetches the models' sources onto the node (`halogen pull` in the image)."""

    enabled: bool = Field(True, description="Render the pull Job when a model names a source.")
    tokenSecret: Annotated[str, StringConstraints(pattern=K8S_NAME, max_length=253)] | None = Field(
        None,
        description="A Secret in the deployment's namespace holding a Hugging Face token (for gated or "
        "private repositories), passed as HF_TOKEN. Create it yourself: it never goes into out/.",
    )
    tokenSecretKey: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = "token"
    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s\x00]+$")] | None = Field(
        None, description="A Hub mirror, passed as HF_ENDPOINT."
    )
    ttlSecondsAfterFinished: int = Field(
        3600, ge=0, description="The finished Job (and its pod, with its log) is deleted after this long."
    )
    resources: Resources = Resources(requests={"memory": "256Mi"}, limits={"memory": "1Gi"})


class Smoke(_Input):
    """A Job that checks each config once it is applied: `halogen smoke` in the image, against
    the Service, waiting until the pod serves this config (its sha256) and then asking each of
    `models` for a short answer. Flux applies it from out/smoke/ after the Deployment, and reports
    the deployment failed when it fails (docs/flux/)."""

    enabled: bool = Field(False, description="Render out/smoke/: the Job and its kustomization.yaml.")
    models: list[Annotated[str, StringConstraints(pattern=r"^[^\s\x00]{1,256}$")]] = Field(
        [],
        description="Model ids, aliases or variant ids the check sends a short request to (each "
        "loads its model). None: only that the pod answers with the new config.",
    )
    wait: int = Field(
        300,
        ge=1,
        description="Seconds to wait for the pod to serve this config: after a reload, the kubelet "
        "updates the ConfigMap's files within about a minute and serve reloads within 2 s.",
    )
    timeout: int = Field(
        1800,
        ge=1,
        description="The Job's activeDeadlineSeconds: the wait and every model's start and answer "
        "(a 60 GiB model takes minutes to load).",
    )
    ttlSecondsAfterFinished: int = Field(
        86400,
        ge=0,
        description="The finished Job is deleted after this long; Flux applies it again at its next "
        "reconciliation and the check runs once more (loading `models` again).",
    )
    resources: Resources = Resources(requests={"memory": "64Mi"}, limits={"memory": "256Mi"})

    @model_validator(mode="after")
    def _deadline_after_wait(self) -> Smoke:
        if self.timeout <= self.wait:
            raise ValueError(
                f"timeout ({self.timeout}s) must be longer than wait ({self.wait}s): the Job would be "
                "stopped before the check could end"
            )
        return self


class ModelsMount(_Input):
    hostPath: Annotated[str, StringConstraints(pattern=r"^/[^\n\x00]*$")]
    mountPath: Annotated[str, StringConstraints(pattern=r"^/[^\n\x00]*$")] = MODELS_DIR
    pull: Pull = Pull()


class Service(_Input):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    address: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F:.]+$")] | None = Field(
        None, description="A LoadBalancer IP address, requested from MetalLB by annotation."
    )
    annotations: dict[str, OneLine] = {}
    externalTrafficPolicy: Literal["Cluster", "Local"] | None = None

    @field_validator("address")
    @classmethod
    def _ip(cls, address: str | None) -> str | None:
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address} is not an IP address (IPv4 or IPv6)") from None
        return address


Duration = Annotated[str, StringConstraints(pattern=PROMETHEUS_DURATION, min_length=1)]


class PodMonitor(_Input):
    """A Prometheus Operator PodMonitor for the pod's /metrics, written to out/ when enabled."""

    enabled: bool = False
    interval: Duration = Field("30s", description="How often Prometheus scrapes /metrics.")
    scrapeTimeout: Duration | None = Field(
        None, description="How long a scrape may take (Prometheus's default when unset)."
    )
    labels: dict[
        Annotated[str, StringConstraints(pattern=LABEL_KEY, max_length=317)],
        Annotated[str, StringConstraints(pattern=LABEL_VALUE)],
    ] = Field(
        {},
        description="Labels the Prometheus resource's podMonitorSelector picks it by "
        "(kube-prometheus-stack: release: <its release name>).",
    )


class Deployment(_Input):
    name: Annotated[str, StringConstraints(pattern=K8S_NAME, max_length=52)]
    namespace: Annotated[str, StringConstraints(pattern=K8S_NAME, max_length=63)] = "default"
    image: Image = Image()
    port: int = Field(PORT, ge=1, le=65535)
    kubernetesVersion: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]+$")] = "1.32"
    strategy: Literal["auto", "RollingUpdate", "Recreate"] = Field(
        "auto",
        description="auto: Recreate when models are preloaded (two pods would each hold them "
        "in memory during a rollout), else RollingUpdate with maxSurge 1, maxUnavailable 0.",
    )
    terminationGracePeriodSeconds: int = Field(60, ge=1)
    models: ModelsMount
    resources: Resources = Resources()
    service: Service = Service()
    env: dict[EnvName, OneLine] = {}
    runAsUser: int = Field(USER_ID, ge=1, description="The image's numeric user.")
    devicePlugin: Literal["none", "amd"] = Field(
        "none",
        description="amd: the nodes run the AMD GPU device plugin, which hands a pod that asks for "
        "amd.com/gpu the device files it may open, so such a backend needs no supplementalGroups.",
    )
    allowOrigins: list[Annotated[str, StringConstraints(pattern=r"^(\*|https?://[^/\s]+)$")]] = Field(
        [],
        description="Web origins (http://chat.lan:3000, or * for any) whose pages may call the "
        "API from a browser; the proxy refuses requests from other sites' pages.",
    )
    podMonitor: PodMonitor = PodMonitor()
    allowHosts: list[Annotated[str, StringConstraints(pattern=ALLOWED_HOST)]] = Field(
        [],
        description="Names (chat.lan; .lan for every name under it; * for any) the proxy answers "
        "to besides the Service's own and any address; a request that names another is refused, "
        "so a page on another site cannot reach it by pointing its own name here (DNS rebinding).",
    )

    onConfigChange: Literal["restart", "reload"] = Field(
        "restart",
        description="What a new config.yaml does to the running pod. restart: its sha256 goes on "
        "the pod template, so every config change rolls the pod and every model is loaded again. "
        "reload: the sha256 goes on the Deployment's and the ConfigMap's own annotations; the "
        "kubelet updates the mounted file in place (within about a minute) and serve reloads it, "
        "restarting only the models whose command changed; only a change to the pod itself "
        "(image, resources, devices, env, Secrets) rolls it. Unset means restart, what sites "
        "built before this key got; `halogen init` writes reload.",
    )
    smoke: Smoke = Smoke()

    @field_validator("kubernetesVersion")
    @classmethod
    def _sleeps_before_stop(cls, version: str) -> str:
        # The pod's preStop hook is a `sleep` action: beta and on by default from 1.30.
        if int(version.split(".")[1]) < MIN_KUBERNETES_MINOR:
            raise ValueError(
                f"{version} is older than 1.{MIN_KUBERNETES_MINOR}, the first Kubernetes to run "
                "the pod's preStop sleep by default"
            )
        return version


class Upstream(_Input):
    ignorePaths: list[OneLine] | None = Field(
        None, description="Regular expressions: /upstream paths that never start a model."
    )


class Globals(_Input):
    """llama-swap's top-level settings that halogen passes through."""

    healthCheckTimeout: int = Field(120, ge=MIN_HEALTH_CHECK_TIMEOUT)
    globalTTL: int = Field(0, ge=0)
    unloadTimeout: int = Field(10, ge=1)
    startPort: int = Field(5800, ge=1024, le=65000)
    logLevel: Literal["debug", "info", "warn", "error"] = "info"
    logToStdout: Literal["proxy", "upstream", "both", "none"] = "proxy"
    metricsMaxInMemory: int = Field(1000, ge=1)
    includeAliasesInList: bool = False
    sendLoadingState: bool = Field(
        False, description="Stream loading progress as reasoning while a chat waits for its model."
    )
    preload: list[str] = []
    logTimeFormat: ls.LogTimeFormat = ""
    upstream: Upstream = Upstream()
    captureBuffer: int = Field(
        5, ge=0, description="MB of request/response captures kept for the activity API; 0 = none."
    )
    ui: ls.Ui = Field(ls.Ui(), description="llama-swap's web UI: ui.activity.session_id headers.")
    performance: ls.Performance = Field(
        ls.Performance(), description="CPU, memory and GPU samples: disabled, every (Go duration, >= 5s)."
    )


class Group(_Input):
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


class Matrix(_Input):
    """Which models may run together, instead of groups: llama-swap's swap matrix."""

    sets: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")], OneLine] = Field(
        min_length=1,
        description="Named sets of model ids that may run together: `a & b` (together), `a | b` "
        "(either), parentheses, `+name` (another set). A set allows every subset of itself; "
        "ties go to the set tried first. A model in no set runs alone.",
    )
    evictCosts: dict[str, Annotated[int, Field(ge=1)]] = Field(
        {}, description="What stopping a running model costs (default 1); the solver keeps the costliest."
    )


class SelectorSettings(_Input):
    spillover: int = Field(1, ge=1, description="Requests per active target before the next one starts.")


class Selector(_Input):
    """A virtual model id that picks one of its targets per request."""

    strategy: Literal["warm", "pin", "spillover"] = Field(
        description="warm: the first ready target, else a starting one, else start the first; "
        "pin: the first target; spillover: fill targets in order up to settings.spillover requests each."
    )
    targets: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        min_length=1, description="Model ids or aliases, in order."
    )
    settings: SelectorSettings = SelectorSettings()
    name: Annotated[str, StringConstraints(max_length=128)] = ""
    description: Annotated[str, StringConstraints(max_length=1024)] = ""
    unlisted: bool = False
    metadata: dict[str, object] = {}


class Profile(_Input):
    """Ids rewritten while the profile is switched on at run time; a null pin disables its id."""

    description: Annotated[str, StringConstraints(max_length=1024)] = ""
    pins: dict[Annotated[str, StringConstraints(min_length=1)], str | None] = Field(min_length=1)


class Backend(_Input):
    """How one kind of llama-server runs: written once, applied to every model that names it."""

    binary: Annotated[str, StringConstraints(pattern=r"^/[^\s\x00]*$")] = LLAMA_SERVER["rocm"]
    host: OneLine = "127.0.0.1"
    args: list[Arg] = []
    env: dict[EnvName, OneLine] = {}
    devices: list[Annotated[str, StringConstraints(pattern=DEVICE)]] = Field(
        [], description="Host device paths the pod mounts for this backend, e.g. /dev/dri, /dev/kfd."
    )
    supplementalGroups: list[int] = Field([], description="Group ids that own those devices (video, render).")
    resources: dict[Annotated[str, StringConstraints(pattern=EXTENDED_RESOURCE)], Quantity] = Field(
        {}, description="Extended resources, e.g. amd.com/gpu: 1 with the AMD device plugin."
    )

    @field_validator("resources")
    @classmethod
    def _known_gpu(cls, resources: dict[str, object]) -> dict[str, object]:
        for name in resources:
            close = difflib.get_close_matches(name, GPU_RESOURCES, n=1, cutoff=0.8)
            if close and close[0] != name:
                raise ValueError(f"{name} is not a device plugin's resource: did you mean {close[0]}?")
        return resources


class Filters(_Input):
    stripParams: list[Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_]+$")]] = []
    setParams: dict[str, object] = {}


class PeerKey(_Input):
    """A peer's API key, from a Kubernetes Secret: the Deployment passes it to the proxy as the
    environment variable `env`, and the config names it as `${env.NAME}`, so no key is ever
    written to out/."""

    secret: Annotated[str, StringConstraints(pattern=K8S_NAME, max_length=253)]
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$")] = "apiKey"
    env: EnvName


class PeerTimeouts(_Input):
    connect: int | None = Field(None, ge=0, description="Seconds to connect; 0 = no limit. Default 30.")
    responseHeader: int | None = Field(
        None, ge=0, description="Seconds to wait for response headers; 0 = no limit. Default 60."
    )


class SitePeer(_Input):
    """Another server (a second halogen or llama-swap, or a hosted API) whose models this one
    serves as `<peer>/<model>` (llama-swap's peers)."""

    proxy: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
    models: list[Annotated[str, StringConstraints(pattern=r"^[^\s\x00]{1,256}$")]] = Field(min_length=1)
    apiKey: PeerKey | None = None
    filters: Filters = Filters()
    timeouts: PeerTimeouts = PeerTimeouts()


NODE_ID = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A DNS name (RFC 1123 labels) or an IP address: where the other nodes reach a node.
NODE_ADDRESS = (
    r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|[0-9a-fA-F:.]+)$"
)
DEFAULT_RPC_PORT = 50052  # rpc-server's own default (llama.cpp tools/rpc/rpc-server.cpp)


class Node(_Input):
    """One machine of the cluster: the build places models on it, gives it its own proxy
    Deployment (pinned by kubernetes.io/hostname) and, when it helps a split model, an rpc-server."""

    hostname: Annotated[str, StringConstraints(pattern=LABEL_VALUE, min_length=1, max_length=63)] | None = (
        Field(None, description="The node's kubernetes.io/hostname label; default: the node id.")
    )
    address: Annotated[str, StringConstraints(pattern=NODE_ADDRESS, max_length=253)] | None = Field(
        None,
        description="Where the other nodes reach this one's proxy and rpc-server (an IP or a DNS name), "
        "for nodes that run `halogen serve` outside the cluster's Services. Default, and what a "
        "cluster wants: its Services' cluster DNS names, which keep the rpc-server's NetworkPolicy "
        "able to tell the main node's pod by its labels.",
    )
    memoryBudget: Quantity = Field(
        description="How much memory this node's models (and its shares of split models) may hold together."
    )
    backends: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, description="The backends (ids from `backends:`) this node can run; default: all."
    )
    frontDoor: bool = Field(
        False,
        description="Exactly one node is the front door: the Service's LoadBalancer address stays on it.",
    )
    rpcPort: int = Field(
        DEFAULT_RPC_PORT,
        ge=1,
        le=65535,
        description="The port of its rpc-server when it helps a split model.",
    )
    port: int | None = Field(None, ge=1, le=65535, description="Its proxy's port; default deployment.port.")


class SiteFile(_Input):
    """`halogen.yaml`."""

    deployment: Deployment
    memoryBudget: Quantity | None = Field(
        None,
        description="How much memory the models may hold together, e.g. 120Gi. Default: the pod's "
        "memory limit less the proxy's share. Checked against each model's estimate from halogen.lock.",
    )
    llamaSwap: Globals = Globals()
    macros: dict[Annotated[str, StringConstraints(pattern=MACRO_NAME)], MacroValue] = {}
    groups: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$")], Group] = {}
    matrix: Matrix | None = Field(None, description="Route with a swap matrix instead of groups.")
    selectors: dict[Annotated[str, StringConstraints(min_length=1)], Selector] = {}
    profiles: dict[Annotated[str, StringConstraints(min_length=1)], Profile] = {}
    peers: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$")], SitePeer] = {}
    apiKeys: list[PeerKey] = Field(
        [],
        description="Keys clients must send (llama-swap's apiKeys), each from a Kubernetes Secret: "
        "the config names it as `${env.NAME}`, so no key is ever written to out/.",
    )
    # A backend id is a macro name in the written config, so it obeys llama-swap's macro rules.
    backends: dict[Annotated[str, StringConstraints(pattern=BACKEND_ID)], Backend] = Field(min_length=1)
    nodes: dict[Annotated[str, StringConstraints(pattern=NODE_ID, max_length=40)], Node] = Field(
        {},
        description="The machines the site runs on, when more than one: the build places each model "
        "on a node (or splits it over several with llama.cpp's rpc-server), and writes a proxy per node.",
    )


class Metadata(_Input):
    """What the Ollama API reports about a model."""

    architecture: OneLine | None = None
    family: OneLine | None = None
    parameterSize: OneLine | None = None
    quantizationLevel: OneLine | None = None
    contextLength: int | None = Field(None, gt=0)


# A variant's name is the tag after `:` in the id clients ask for (`latest`, the model itself,
# is refused by the checks).
VariantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


HF_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


class Source(_Input):
    """Where a model's GGUF comes from: a file in a Hugging Face repository, at a revision.
    `repo` and `file` default to the model's `file` path read as `<org>/<repo>/<file>`."""

    repo: Annotated[str, StringConstraints(pattern=HF_REPO)] | None = Field(
        None, description="The Hugging Face repository, org/name; default: the first two parts of `file`."
    )
    file: Annotated[str, StringConstraints(pattern=r"^[^/\n\x00][^\n\x00]*\.gguf$")] | None = Field(
        None,
        description="The file in the repository; default: the rest of `file`. For a split GGUF, "
        "the first part (-00001-of-0000N.gguf): every part is fetched.",
    )
    revision: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")] = Field(
        "main",
        description="A commit (40 hex digits) pins the file in Git. A branch or tag is accepted, "
        "and `halogen pull` warns that it can move: the sha256 in halogen.lock then pins the content.",
    )

    @property
    def pinned(self) -> bool:
        return is_commit(self.revision)


class ModelLlamaSwap(_Input):
    """llama-swap's model keys that a model file has no key of its own for, written into
    config.yaml as given (what `halogen import` carries over from a llama-swap config)."""

    proxy: OneLine | None = Field(None, description="Where requests go; default http://localhost:${PORT}.")
    unloadTimeout: int | None = Field(
        None, ge=0, description="Seconds to stop; unset = llamaSwap.unloadTimeout."
    )
    timeouts: ls.Timeouts | None = None
    compat: ls.Compat | None = None
    capabilities: ls.Capabilities | None = Field(
        None, description="What /v1/models says the model takes and gives."
    )
    metadata: dict[str, object] = Field({}, description="More metadata for /v1/models, beside `metadata`.")


class ModelFile(_Input):
    """One file in `models.d/`; the model id is the file name without `.yaml`."""

    name: Annotated[str, StringConstraints(max_length=128)] = ""
    description: Annotated[str, StringConstraints(max_length=1024)] = ""
    file: OneLine | None = Field(None, description="GGUF path, relative to the models mount.")
    backend: str | None = None
    group: str | None = None
    priority: int = Field(0, description="Queued requests for higher priorities are served first.")
    contextSize: int | None = Field(None, gt=0)
    args: list[Arg] = Field([], description="Extra llama-server arguments.")
    cmd: NoNul | None = Field(
        None, min_length=1, description="A raw command line instead of file/backend/args."
    )
    cmdStop: NoNul | None = None
    checkEndpoint: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$|^none$")] | None = None
    env: dict[EnvName, OneLine] = {}
    aliases: list[Annotated[str, StringConstraints(pattern=r"^[^\s\x00]{1,128}$")]] = []
    ttl: int | None = Field(
        None, ge=0, description="Idle seconds before unload; 0 = never; unset = llamaSwap.globalTTL."
    )
    unlisted: bool = False
    useModelName: OneLine | None = None
    concurrencyLimit: int | None = Field(None, ge=1)
    sendLoadingState: bool | None = Field(None, description="Unset = llamaSwap.sendLoadingState.")
    filters: Filters = Filters()
    variants: dict[VariantName, dict[str, object]] = Field(
        {},
        description=(
            "Named sets of request params on the same loaded model: variant `high` is requested as"
            " `<id>:high` and gets its params set (llama-swap's filters.setParamsByID)."
        ),
    )
    metadata: Metadata = Metadata()
    capabilities: list[Capability] = []
    source: Source | None = Field(
        None,
        description="Where `halogen pull` fetches the GGUF from. Without it, a `file` that reads "
        "<org>/<repo>/<file> is fetched from that Hugging Face repository at `main`; `null` says "
        "the file is placed on the node by hand.",
    )
    llamaSwap: ModelLlamaSwap = ModelLlamaSwap()
    node: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        None,
        description="The node (an id from halogen.yaml's `nodes:`) to run on; default: placed by memory.",
    )
    split: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None,
        min_length=2,
        description="Run split over these nodes with llama.cpp's RPC: the first runs llama-server, "
        "the others an rpc-server holding their share of its layers.",
    )

    @model_validator(mode="after")
    def _command_source(self) -> ModelFile:
        if self.cmd is None and self.file is None:
            raise ValueError("a model needs `file` (a GGUF under the models mount) or a raw `cmd`")
        if self.cmd is not None and (self.file or self.args or self.contextSize):
            raise ValueError("`cmd` replaces `file`, `args` and `contextSize`: use one or the other")
        if self.cmd is not None and self.source is not None:
            raise ValueError("`source` says where `file` comes from: a raw `cmd` model has no `file`")
        return self
