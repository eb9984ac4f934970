"""out/ for a site with several nodes: a folder per node, out/nodes/<id>/, holding what out/
holds for one node (config.yaml, its ConfigMap, Deployment and Service, named
`<deployment>-<node>`, and a kustomization), plus, on a node that helps split models, its
rpc-server's Deployment, Service and NetworkPolicy; out/kustomization.yaml lists the folders.
The pull Jobs go to out/pull/<id>/, listed by out/pull/kustomization.yaml, so the Flux
Kustomization of docs/flux/ (path ./out, and ./out/pull) applies them unchanged.

A folder per node, not suffixed names in one folder: each node's files keep the names they have
on a one-node site, `halogen serve --config out/nodes/<id>/config.yaml` runs one box by hand,
and a diff says at a glance which box a change touches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from halogen.compiler.render import manifests
from halogen.compiler.render.manifests import Device
from halogen.compiler.site.inputs import Backend
from halogen.compiler.site.load import Site
from halogen.compiler.site.nodes import deployment_name, hostname, rpc_name
from halogen.modelfiles import FileSource

FOLDER = "nodes"
HOSTNAME_LABEL = "kubernetes.io/hostname"
RPC_SERVER = "/usr/local/bin/rpc-server"
"""llama.cpp's tools/rpc/rpc-server, built beside llama-server into the image."""
RPC_CACHE = "/cache"
RPC_MANIFESTS = ("rpc-server.yaml", "rpc-service.yaml", "rpc-networkpolicy.yaml")


@dataclass(frozen=True)
class RpcServer:
    """A node's rpc-server, when it holds shares of split models (halogen.compiler.placement)."""

    backend: Backend  # of the split models it holds: its env and devices
    held: int  # bytes of their shares
    mains: tuple[str, ...]  # the nodes whose llama-server connects to it


@dataclass(frozen=True)
class NodeOutput:
    """What render needs of one node: its view of the site, its config's text, its rpc-server."""

    view: Site
    config_text: str
    wanted: Sequence[FileSource]
    environment: Mapping[str, str]
    rpc: RpcServer | None


def _rpc(site: Site, node: str, rpc: RpcServer) -> dict[str, Any]:
    backend = rpc.backend
    name = rpc_name(site, node)
    selector = {"app": name}
    labels = {
        **selector,
        "app.kubernetes.io/component": "rpc-server",
        "app.kubernetes.io/managed-by": "halogen",
        "app.kubernetes.io/name": name,
    }
    port = site.spec.nodes[node].rpcPort
    held = rpc.held
    devices = [
        Device(
            p,
            "dev-" + p.removeprefix("/dev/").replace("/", "-").replace(".", "-").lower(),
            "Directory" if p == "/dev/dri" else "CharDevice",
        )
        for p in sorted(backend.devices)
    ]
    resources: dict[str, dict[str, Any]] = {}
    if held:
        # A request, not a limit: the scheduler counts the shares; a limit under what llama.cpp
        # really allocates would kill the pod in the middle of a load.
        resources["requests"] = {"memory": str(held)}
    if backend.resources:
        resources["limits"] = dict(sorted(backend.resources.items()))
    return {
        "name": name,
        "selector": selector,
        "labels": dict(sorted(labels.items())),
        "port": port,
        # rpc-server's flags (tools/rpc/rpc-server.cpp, llama.cpp): -H host, -p port, -c cache.
        # 0.0.0.0 inside its own pod: the Service and the NetworkPolicy decide who reaches it.
        "command": [RPC_SERVER, "-H", "0.0.0.0", "-p", str(port), "-c"],
        "env": sorted({**site.spec.deployment.env, **backend.env, "LLAMA_CACHE": RPC_CACHE}.items()),
        "cache": RPC_CACHE,
        "devices": devices,
        "supplemental_groups": sorted(backend.supplementalGroups),
        "resources": resources,
        "clients": [{"app": deployment_name(site, m)} for m in rpc.mains],
    }


def render(site: Site, outputs: Mapping[str, NodeOutput]) -> dict[str, str]:
    env = manifests.templates()
    files: dict[str, str] = {}
    pulled = []
    for node, output in outputs.items():
        selector = {HOSTNAME_LABEL: hostname(site, node)}
        rendered = manifests.render(
            output.view, output.config_text, output.wanted, output.environment, selector
        )
        listed = list(manifests.MANIFESTS)
        folder = f"{FOLDER}/{node}"
        files[f"{folder}/config.yaml"] = output.config_text
        for name in manifests.MANIFESTS:
            files[f"{folder}/{name}"] = rendered[name]
        for name, text in rendered.items():
            if name.startswith("pull/") and name != "pull/kustomization.yaml":
                files[f"pull/{node}/{name.removeprefix('pull/')}"] = text
        if any(n.startswith("pull/") for n in rendered):
            files[f"pull/{node}/kustomization.yaml"] = rendered["pull/kustomization.yaml"]
            pulled.append(node)
        if output.rpc is not None:
            context = {
                "header": manifests.HEADER,
                "d": site.spec.deployment,
                "node_selector": selector,
                "rpc": _rpc(site, node, output.rpc),
            }
            for name in RPC_MANIFESTS:
                files[f"{folder}/{name}"] = env.get_template(f"{name}.j2").render(context)
            listed += RPC_MANIFESTS
        files[f"{folder}/kustomization.yaml"] = env.get_template("kustomization.yaml.j2").render(
            {"header": manifests.HEADER, "manifests": listed}
        )
    top = {"header": manifests.HEADER, "manifests": [f"{FOLDER}/{n}" for n in outputs]}
    files["kustomization.yaml"] = env.get_template("kustomization.yaml.j2").render(top)
    if pulled:
        files["pull/kustomization.yaml"] = env.get_template("kustomization.yaml.j2").render(
            {"header": manifests.HEADER, "manifests": pulled}
        )
    return files
