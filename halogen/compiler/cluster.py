"""Each node's view of a site with several nodes: the models placed on it, the other nodes as
its peers, its own budget and names. The rest of the compiler (budget, fit, render, resolve)
then runs on that view as on a one-node site. Pure.

How the nodes reach each other: by their Services' cluster DNS names
(`<deployment>-<node>.<namespace>.svc.cluster.local`), unless a node gives an `address`. A
request from one node's proxy to another's Service keeps the calling pod's IP (kube-proxy
rewrites only the destination), so the rpc-server's NetworkPolicy can admit the main node's pod
by its labels; a node's LAN address would be reached through the host (a hostPort), where the
source is rewritten to the node's own address and no label is left to tell the pod by. The
names also survive a node's address changing, and go only to a pod that is ready.
"""

from __future__ import annotations

import ipaddress

from halogen.compiler import facts
from halogen.compiler.placement import Placement, Split
from halogen.compiler.site.checks import backend_of
from halogen.compiler.site.inputs import Deployment, PeerKey, PeerTimeouts, Service, SitePeer
from halogen.compiler.site.load import Model, Site
from halogen.compiler.site.nodes import deployment_name, rpc_name
from halogen.diagnostics import Diagnostic

MiB = 1024 * 1024


def port(site: Site, node: str) -> int:
    return site.spec.nodes[node].port or site.spec.deployment.port


def _host(site: Site, node: str, service: str) -> str:
    address = site.spec.nodes[node].address
    return address or f"{service}.{site.spec.deployment.namespace}.svc.cluster.local"


def proxy_url(site: Site, node: str) -> str:
    return f"http://{_host(site, node, deployment_name(site, node))}:{port(site, node)}"


def rpc_endpoint(site: Site, node: str) -> str:
    """host:port as llama-server's --rpc reads it (ggml-rpc.cpp's parse_endpoint: up to the
    first ':', so no IPv6 literal; the nodes' checks refuse one)."""
    return f"{_host(site, node, rpc_name(site, node))}:{site.spec.nodes[node].rpcPort}"


def offloads(site: Site, model: Model) -> bool:
    """Whether the model's backend puts layers on a local GPU: it mounts one, or claims one
    from a device plugin. The seed's `cpu` backend does neither (and hides the GPU)."""
    backend = site.spec.backends[backend_of(site, model) or ""]
    return bool(backend.devices or backend.resources)


def split_args(site: Site, split: Split) -> list[str]:
    """The flags that run a model over its rpc-servers (common/arg.cpp, llama.cpp).

    llama.cpp puts the RPC servers at the front of its device list, then the local GPUs
    (src/llama.cpp: "add RPC servers at the front of the list to minimize network transfers"),
    and --tensor-split gives each device its proportion in that order: the helpers' shares
    first, in --rpc order, then the main node's. A main node without a GPU has no device of its
    own: the layers it keeps are those --n-gpu-layers does not offload, so its share is said in
    layers (the last ones go to the devices) and --tensor-split divides the rest among the
    helpers."""
    model = site.models[split.model]
    weights = [max(1, w // MiB) for w in split.weights]  # MiB: whole numbers, same proportions
    args = ["--rpc", ",".join(rpc_endpoint(site, n) for n in split.helpers)]
    if offloads(site, model):
        return [
            *args,
            "--n-gpu-layers",
            "all",
            "--tensor-split",
            ",".join(map(str, [*weights[1:], weights[0]])),
        ]
    known = facts.facts_of(site, model)
    layers = known.blockCount if known is not None else 0
    offloaded = layers - round(layers * split.fraction(split.main))
    return [*args, "--n-gpu-layers", str(offloaded), "--tensor-split", ",".join(map(str, weights[1:]))]


def split_problems(site: Site, placement: Placement) -> list[Diagnostic]:
    """A split whose main node has no GPU says its share in layers, which only halogen.lock knows."""
    out = []
    for model_id, split in sorted(placement.splits.items()):
        model = site.models[model_id]
        if not offloads(site, model) and facts.facts_of(site, model) is None:
            out.append(
                model.doc.diagnostic(
                    ("split",),
                    f"{split.main!r} keeps its share of the layers on the CPU, and halogen.lock does not "
                    "know how many layers the model has",
                    "run `halogen lock` where the model file is, and commit halogen.lock",
                )
            )
    return out


def _peers(site: Site, placement: Placement, node: str) -> dict[str, SitePeer]:
    """The other nodes as llama-swap peers, each with the names its models answer to, so a
    request for any model reaches it from any node, by its plain id (a bare name that exactly
    one peer offers routes to it: internal/router/peer.go, llama-swap). The nodes share the
    site's API keys, so a peer is sent the first of them."""
    key: PeerKey | None = site.spec.apiKeys[0] if site.spec.apiKeys else None
    peers = {}
    for other, plan in placement.nodes.items():
        if other == node or not plan.models:
            continue
        names: list[str] = []
        for model_id in sorted(plan.models):
            spec = site.models[model_id].spec
            names += [model_id, *sorted(spec.aliases), *(f"{model_id}:{v}" for v in sorted(spec.variants))]
        # No limit on the answer's headers (a peer's default is 60 s): the other node may first
        # wait for a running model and then load this one, which for a model large enough to
        # split takes minutes, as a model of this node's own would. A node that is down is still
        # found at once: the connect timeout stays.
        peers[other] = SitePeer(
            proxy=proxy_url(site, other),
            models=names,
            apiKey=key,
            timeouts=PeerTimeouts(responseHeader=0),
        )
    return peers


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _deployment(site: Site, node: str) -> Deployment:
    d = site.spec.deployment
    spec = site.spec.nodes[node]
    service = d.service if spec.frontDoor else Service()
    hosts = list(d.allowHosts)
    if spec.address and not _is_ip(spec.address) and spec.address not in hosts:
        hosts.append(spec.address)  # the other nodes' requests name it in Host; serve answers any IP
    return d.model_copy(
        update={
            "name": deployment_name(site, node),
            "port": port(site, node),
            "service": service,
            "allowHosts": hosts,
        }
    )


def node_site(site: Site, placement: Placement, node: str) -> Site:
    """The site as `node` runs it."""
    plan = placement.nodes[node]
    models = {}
    shares = {}
    for model_id in sorted(plan.models):
        model = site.models[model_id]
        split = placement.splits.get(model_id)
        if split is not None:
            flags = [*model.spec.args, *split_args(site, split)]
            model = Model(model.id, model.spec.model_copy(update={"args": flags}), model.doc)
            shares[model_id] = split.fraction(node)
        models[model_id] = model
    spec = site.spec
    swap = spec.llamaSwap.model_copy(update={"preload": [m for m in spec.llamaSwap.preload if m in models]})
    view = spec.model_copy(
        update={
            "deployment": _deployment(site, node),
            # As written when the node holds no share of another's model, so messages quote it.
            "memoryBudget": plan.for_models if plan.held else spec.nodes[node].memoryBudget,
            "nodes": {},
            "peers": {**spec.peers, **_peers(site, placement, node)},
            "llamaSwap": swap,
        }
    )
    return Site(view, site.doc, models, site.lock, shares)
