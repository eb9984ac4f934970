"""A site with several nodes, all on this machine, built with the installed `halogen lock` and
`halogen build` as a person runs them: each node at 127.0.0.1 with ports of its own (its proxy's
`port`, its rpc-server's `rpcPort`), so that each node's out/nodes/<id>/config.yaml runs here
under `halogen serve` and llama-server's `--rpc` reaches rpc-servers on loopback."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ports import free_port_run, free_ports

from .harness import PATIENCE, fake_argv

HALOGEN = Path(sys.executable).with_name("halogen")  # the installed console script
LLAMA_SERVER = "/usr/local/bin/llama-server"  # the image's, as a site names it; serve swaps it


@dataclass(frozen=True)
class Node:
    id: str
    port: int  # its proxy's
    rpc_port: int  # its rpc-server's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"


@dataclass(frozen=True)
class NodesSite:
    root: Path
    models_dir: Path
    nodes: dict[str, Node]

    def config(self, node: str) -> Path:
        return self.root / "out" / "nodes" / node / "config.yaml"

    def compiled(self, node: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.config(node).read_text())
        return data

    def argv(self, node: str, model: str) -> list[str]:
        """The command line `node`'s config runs `model` with, as llama-swap splits it."""
        return shlex.split(self.compiled(node)["models"][model]["cmd"])


def fake_model(node: str, name: str, record: Path | None = None) -> dict[str, Any]:
    """A model file run by the fake upstream on `node`, on a port of its own: two nodes served on
    one machine share the site's startPort, and this keeps them apart."""
    (port,) = free_ports(1)
    return {
        "cmd": shlex.join(fake_argv(port, name, record)),
        "node": node,
        "llamaSwap": {"proxy": f"http://127.0.0.1:{port}"},
    }


def build_site(
    root: Path, models_dir: Path, nodes: list[str], models: dict[str, dict[str, Any]]
) -> NodesSite:
    """halogen.yaml with `nodes` (the first the front door) and a `cpu` backend, models.d/ with
    `models`, locked against `models_dir` and built; fails with the command's output."""
    placed = {n: Node(n, *free_ports(2)) for n in nodes}
    site = {
        "deployment": {
            "name": "smol",
            "namespace": "ai",
            "image": {"tag": "0.1.0"},
            "models": {"hostPath": "/var/lib/models", "mountPath": "/models"},
            "resources": {"limits": {"memory": "4Gi"}},
        },
        "llamaSwap": {"healthCheckTimeout": 120, "startPort": free_port_run(len(models))},
        "backends": {
            "cpu": {"binary": LLAMA_SERVER, "args": ["--n-gpu-layers", "0", "--threads", "1"]},
        },
        "nodes": {
            n.id: {
                "address": "127.0.0.1",
                "memoryBudget": "1Gi",
                "port": n.port,
                "rpcPort": n.rpc_port,
                **({"frontDoor": True} if i == 0 else {}),
            }
            for i, n in enumerate(placed.values())
        },
    }
    (root / "models.d").mkdir(parents=True)
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    for model_id, data in models.items():
        (root / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    for argv in ([str(HALOGEN), "lock", "--models-dir", str(models_dir)], [str(HALOGEN), "build"]):
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=PATIENCE * 4)
        assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}{done.stderr}"
    return NodesSite(root, models_dir, placed)


def models_folder(root: Path, *ggufs: Path) -> Path:
    """A models folder holding hard links to `ggufs` (never copies)."""
    root.mkdir(parents=True, exist_ok=True)
    for gguf in ggufs:
        (root / gguf.name).hardlink_to(gguf)
    return root
