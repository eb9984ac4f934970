"""The rules of `nodes:` in halogen.yaml and of `node:`/`split:` in model files, each reported at
the value that breaks it. Where models go is halogen.compiler.placement's; this says only what
may be written."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import PurePosixPath

from halogen.compiler.site.checks import backend_of
from halogen.compiler.site.load import Model, Site
from halogen.diagnostics import Diagnostic

RPC_SUFFIX = "-rpc"
NAME_LIMIT = 63  # a Service's name is a DNS label (RFC 1035)
SPLIT_FLAGS = frozenset({"--rpc", "-ts", "--tensor-split", "-sm", "--split-mode", "-mg", "--main-gpu"})
"""llama-server's flags that halogen writes for a split model (common/arg.cpp, llama.cpp)."""


def node_backends(site: Site, node_id: str) -> list[str]:
    """The backends a node runs: those it names, else every backend of the site."""
    named = site.spec.nodes[node_id].backends
    return list(site.spec.backends) if named is None else named


def deployment_name(site: Site, node: str) -> str:
    """The name of a node's proxy: its Deployment, Service and (with -config) ConfigMap."""
    return f"{site.spec.deployment.name}-{node}"


def rpc_name(site: Site, node: str) -> str:
    """The name of a node's rpc-server: its Deployment, Service and NetworkPolicy."""
    return f"{deployment_name(site, node)}{RPC_SUFFIX}"


def hostname(site: Site, node_id: str) -> str:
    return site.spec.nodes[node_id].hostname or node_id


def front_door(site: Site) -> str | None:
    doors = [n for n, node in site.spec.nodes.items() if node.frontDoor]
    return doors[0] if len(doors) == 1 else None


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    listing = f"declared: {', '.join(sorted(known)) or 'none'}"
    return f"did you mean {close[0]!r}? {listing}" if close else listing


def check(site: Site) -> Iterator[Diagnostic]:
    if not site.spec.nodes:
        yield from _no_nodes(site)
        return
    yield from _site(site)
    for model_id in sorted(site.models):
        yield from _model(site, site.models[model_id])


def _no_nodes(site: Site) -> Iterator[Diagnostic]:
    for model_id in sorted(site.models):
        model = site.models[model_id]
        for key in ("node", "split"):
            if getattr(model.spec, key) is not None:
                yield model.doc.diagnostic(
                    (key,),
                    f"`{key}` names a node, and halogen.yaml declares no `nodes:`",
                    "declare the nodes in halogen.yaml, or remove the key: one node runs every model",
                )


def _site(site: Site) -> Iterator[Diagnostic]:
    spec = site.spec
    doors = [n for n, node in spec.nodes.items() if node.frontDoor]
    if not doors:
        yield site.doc.diagnostic(
            ("nodes",),
            "no node is the front door",
            "set frontDoor: true on the node whose Service holds the site's address, deployment.service",
        )
    for extra in doors[1:]:
        yield site.doc.diagnostic(
            ("nodes", extra, "frontDoor"),
            f"{doors[0]!r} is already the front door",
            "exactly one node is the front door: set frontDoor on one of them",
        )
    if spec.memoryBudget is not None:
        yield site.doc.diagnostic(
            ("memoryBudget",),
            "with `nodes:`, each node has its own memoryBudget, and the site's is not used",
            "remove it, or move it to the nodes",
            severity="warning",
        )
    if spec.matrix is not None:
        yield site.doc.diagnostic(
            ("matrix",),
            "a hand-written matrix names models that `nodes:` may place on different nodes",
            "remove it: each node gets a matrix fitted to its own budget, or declare groups",
        )
    for peer in sorted(set(spec.peers) & set(spec.nodes)):
        yield site.doc.diagnostic(
            ("peers", peer),
            f"peer {peer!r} has the id of a node, and each node is the others' peer by its id",
            "rename the peer",
        )
    name = spec.deployment.name
    hostnames: dict[str, str] = {}
    reached: dict[tuple[str, int], str] = {}  # (address, port) -> what listens there
    models_ports = range(spec.llamaSwap.startPort, spec.llamaSwap.startPort + len(site.models))
    for node_id, node in spec.nodes.items():
        longest = f"{name}-{node_id}{RPC_SUFFIX}"
        if len(longest) > NAME_LIMIT:
            yield site.doc.diagnostic(
                ("nodes", node_id),
                f"the name {longest!r} of its rpc-server's Service is {len(longest)} characters, over "
                f"Kubernetes' {NAME_LIMIT}",
                f"shorten the node id or deployment.name to {NAME_LIMIT - len(name) - len(RPC_SUFFIX) - 1} "
                "characters or fewer together",
            )
        if node.address is not None and ":" in node.address:
            yield site.doc.diagnostic(
                ("nodes", node_id, "address"),
                f"{node.address} is an IPv6 address, which llama.cpp's --rpc cannot take: it reads "
                "host:port up to the first ':' (ggml-rpc.cpp, parse_endpoint)",
                "give an IPv4 address or a DNS name, or leave address out: the cluster's Service names are used",
            )
        elif node.address is not None:
            yield site.doc.diagnostic(
                ("nodes", node_id, "address"),
                f"the other nodes reach {node_id!r} at {node.address} (its proxy's port "
                f"{node.port or spec.deployment.port}, its rpc-server's {node.rpcPort}), which out/ does "
                "not open on the node: in the cluster, its Services are reached by name",
                "leave address out in a cluster; give it for nodes that run `halogen serve` outside "
                f"Kubernetes, on out/nodes/{node_id}/config.yaml",
                severity="warning",
            )
        host = node.hostname or node_id
        if host in hostnames:
            yield site.doc.diagnostic(
                ("nodes", node_id, "hostname"),
                f"node {hostnames[host]!r} already runs on hostname {host!r}",
                "give each node its own machine: its kubernetes.io/hostname label",
            )
        hostnames.setdefault(host, node_id)
        for i, backend in enumerate(node.backends or []):
            if backend not in spec.backends:
                yield site.doc.diagnostic(
                    ("nodes", node_id, "backends", i),
                    f"backend {backend!r} is not declared in halogen.yaml",
                    _did_you_mean(backend, list(spec.backends)),
                )
            elif (node.backends or []).index(backend) < i:
                yield site.doc.diagnostic(
                    ("nodes", node_id, "backends", i), f"backend {backend!r} is named twice"
                )
        port = node.port or spec.deployment.port
        for key, number in (("port", port), ("rpcPort", node.rpcPort)):
            if number in models_ports:
                yield site.doc.diagnostic(
                    ("nodes", node_id, key) if key == "rpcPort" or node.port else ("deployment", "port"),
                    f"port {number} is inside the model port range {models_ports.start}-{models_ports.stop - 1}",
                    "move llamaSwap.startPort, or the node's port",
                )
            where = (node.address or "", number) if node.address else None
            if where is not None and where in reached:
                yield site.doc.diagnostic(
                    ("nodes", node_id, key),
                    f"{node.address}:{number} is already {reached[where]}",
                    "give nodes that share an address different ports",
                )
            elif where is not None:
                reached[where] = f"the {'proxy' if key == 'port' else 'rpc-server'} of {node_id!r}"


def _runs_llama_server(site: Site, backend: str | None) -> bool:
    declared = site.spec.backends.get(backend or "")
    return declared is not None and PurePosixPath(declared.binary).name == "llama-server"


def _model(site: Site, model: Model) -> Iterator[Diagnostic]:
    spec = model.spec
    nodes = list(site.spec.nodes)
    backend = backend_of(site, model)
    if spec.node is not None and spec.node not in site.spec.nodes:
        yield model.doc.diagnostic(
            ("node",), f"node {spec.node!r} is not declared in halogen.yaml", _did_you_mean(spec.node, nodes)
        )
    elif (
        spec.node is not None
        and backend in site.spec.backends
        and backend not in node_backends(site, spec.node)
    ):
        yield model.doc.diagnostic(
            ("node",),
            f"node {spec.node!r} does not run backend {backend!r} "
            f"(its backends: {', '.join(node_backends(site, spec.node)) or 'none'})",
            f"add {backend!r} to nodes.{spec.node}.backends in halogen.yaml, or pin the model to another node",
        )
    if spec.split is None:
        return
    if spec.cmd is not None:
        yield model.doc.diagnostic(
            ("split",),
            "a split model needs `file` and a backend: halogen writes its --rpc and --tensor-split",
            "replace the raw `cmd` with `file`, `backend` and `args`",
        )
    elif backend in site.spec.backends and not _runs_llama_server(site, backend):
        yield model.doc.diagnostic(
            ("split",),
            f"backend {backend!r} does not run llama-server, which alone takes --rpc",
            "split only models whose backend's binary is llama-server",
        )
    if spec.node is not None and spec.split and spec.node != spec.split[0]:
        yield model.doc.diagnostic(
            ("node",),
            f"node {spec.node!r} is not the split's main node {spec.split[0]!r}",
            "the first node of `split` runs llama-server: remove `node`, or put it first in `split`",
        )
    for i, node_id in enumerate(spec.split):
        if node_id not in site.spec.nodes:
            yield model.doc.diagnostic(
                ("split", i),
                f"node {node_id!r} is not declared in halogen.yaml",
                _did_you_mean(node_id, nodes),
            )
        elif spec.split.index(node_id) < i:
            yield model.doc.diagnostic(
                ("split", i), f"node {node_id!r} is named twice", "name each node once"
            )
        elif backend in site.spec.backends and backend not in node_backends(site, node_id):
            yield model.doc.diagnostic(
                ("split", i),
                f"node {node_id!r} does not run backend {backend!r} "
                f"(its backends: {', '.join(node_backends(site, node_id)) or 'none'})",
                f"add {backend!r} to nodes.{node_id}.backends in halogen.yaml, or split over other nodes",
            )
    for i, arg in enumerate(spec.args):
        if arg.split("=", 1)[0] in SPLIT_FLAGS:
            yield model.doc.diagnostic(
                ("args", i),
                f"{arg} is written by halogen for a split model",
                "remove it: the split's nodes and shares say where the layers go",
            )
