"""A site with two nodes built end to end: the README's example. Two 128 GB boxes (budget 120Gi
each), the seed's five models and Qwen3-235B-A22B at Q4_K_M, which fits neither box alone. The
GGUFs are synthetic sparse files with the real models' shapes (tests/gguf_shapes.py: each
shape's config.json is cited there), not the real files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from halogen.compiler import budget
from halogen.compiler.pipeline import build, compile_config
from halogen.diagnostics import Invalid
from halogen.llamacpp import cmdline
from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve
from tests.compiler.test_podmonitor import SCHEMA as PODMONITOR_SCHEMA
from tests.gguf_shapes import QWEN3_235B_MODEL, SEED, fitted_site

HALOGEN = Path(sys.executable).with_name("halogen")  # the installed console script
BIG = QWEN3_235B_MODEL[0]
GiB = 1024**3
NODES = {
    "halo-a": {"address": None, "memoryBudget": "120Gi", "frontDoor": True},
    "halo-b": {"memoryBudget": "120Gi"},
}


def two_nodes(root: Path, nodes: dict[str, Any] | None = None) -> Path:
    """The fitted site at `root` made a two-node one: the budget moves to the nodes."""
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    site.pop("memoryBudget", None)
    site["nodes"] = {k: {f: v for f, v in n.items() if v is not None} for k, n in (nodes or NODES).items()}
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site's folder (with its sparse models beside it), written once for the module."""
    return two_nodes(fitted_site(tmp_path_factory.mktemp("nodes"), {**SEED, BIG: QWEN3_235B_MODEL[1]}))


@pytest.fixture
def site(ggufs: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the site to change (the lock names the sparse files, which stay where they are)."""
    root = tmp_path / "site"
    shutil.copytree(ggufs, root, ignore=shutil.ignore_patterns("out"))
    yield root


@pytest.fixture(scope="module")
def files(ggufs: Path) -> dict[str, bytes]:
    return build(ggufs)[0]


def doc(files: dict[str, bytes], name: str) -> Any:
    return yaml.safe_load(files[name])


def test_out_has_a_folder_per_node_listed_by_the_kustomization(files: dict[str, bytes]) -> None:
    assert doc(files, "kustomization.yaml")["resources"] == ["nodes/halo-a", "nodes/halo-b"]
    assert doc(files, "nodes/halo-a/kustomization.yaml")["resources"] == [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
    ]
    assert doc(files, "nodes/halo-b/kustomization.yaml")["resources"] == [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "rpc-server.yaml",
        "rpc-service.yaml",
        "rpc-networkpolicy.yaml",
    ]
    assert doc(files, "pull/kustomization.yaml")["resources"] == ["halo-a", "halo-b"]
    assert "config.yaml" not in files  # each node has its own


def test_the_model_too_big_for_either_box_is_split_and_the_helper_is_charged(files: dict[str, bytes]) -> None:
    a = doc(files, "nodes/halo-a/config.yaml")
    b = doc(files, "nodes/halo-b/config.yaml")
    assert BIG in a["models"] and BIG not in b["models"]
    argv = list(resolve(Config.model_validate(a)).models[BIG].argv)
    rpc = argv[argv.index("--rpc") + 1]
    assert rpc == "llama-swappo-halo-halo-b-rpc.default.svc.cluster.local:50052"
    # A CPU main node: its half of the 94 layers stays, the last 47 go to halo-b's rpc-server.
    assert argv[argv.index("--n-gpu-layers", argv.index("--rpc")) + 1] == "47"
    assert argv[argv.index("--tensor-split") + 1] == "122880"
    assert cmdline.of_command(argv, {}).model == f"/models/{QWEN3_235B_MODEL[1][1]}"
    # halo-b's proxy shares what the share leaves: its fitted sets stay under that.
    env = doc(files, "nodes/halo-b/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["env"]
    left = int(next(e["value"] for e in env if e["name"] == budget.BUDGET_ENV))
    share = int(doc(files, "nodes/halo-b/rpc-server.yaml")["spec"]["template"]["spec"]["containers"][0]
                ["resources"]["requests"]["memory"])  # fmt: skip
    assert left + share == 120 * GiB and share > 60 * GiB
    sizes = {m: meta["metadata"]["memory"] for m, meta in b["models"].items()}
    for members in b["routing"]["router"]["settings"]["matrix"]["sets"].values():
        names = b["routing"]["router"]["settings"]["matrix"]["vars"]
        assert sum(sizes[names[v.strip()]] for v in members.split("&")) <= left


def test_each_node_lists_the_others_models_as_peers_by_plain_id(files: dict[str, bytes]) -> None:
    a = doc(files, "nodes/halo-a/config.yaml")
    b = doc(files, "nodes/halo-b/config.yaml")
    assert a["peers"]["halo-b"]["proxy"] == "http://llama-swappo-halo-halo-b.default.svc.cluster.local:8080"
    assert set(a["peers"]["halo-b"]["models"]) == set(b["models"])
    assert set(b["peers"]["halo-a"]["models"]) == set(a["models"])
    resolved = resolve(Config.model_validate(b))
    route = resolved.peer(BIG)  # the plain id routes to the peer that runs it
    assert route is not None and route.peer == "halo-a" and route.model == BIG
    # A split model loads for minutes on the other node: no 60 s limit on the answer's headers;
    # a node that is down is still found within the connect timeout, which keeps its default.
    assert a["peers"]["halo-b"]["timeouts"] == {"responseHeader": 0}
    assert route.timeouts.responseHeader == 0  # what the proxy waits with (forward/target.py)


def test_each_node_has_its_own_deployment_pinned_to_its_host_with_its_own_config_hash(
    files: dict[str, bytes],
) -> None:
    a = doc(files, "nodes/halo-a/deployment.yaml")
    b = doc(files, "nodes/halo-b/deployment.yaml")
    assert (a["metadata"]["name"], b["metadata"]["name"]) == (
        "llama-swappo-halo-halo-a",
        "llama-swappo-halo-halo-b",
    )
    assert a["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "halo-a"}
    assert b["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "halo-b"}
    hashes = {d["spec"]["template"]["metadata"]["annotations"]["config-version"] for d in (a, b)}
    assert len(hashes) == 2
    volume = next(v for v in a["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == doc(files, "nodes/halo-a/configmap.yaml")["metadata"]["name"]
    job = doc(files, "pull/halo-b/job.yaml")
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "halo-b"}


def test_the_front_door_keeps_the_address_and_the_other_service_is_cluster_ip(
    files: dict[str, bytes],
) -> None:
    a = doc(files, "nodes/halo-a/service.yaml")
    b = doc(files, "nodes/halo-b/service.yaml")
    assert a["spec"]["type"] == "LoadBalancer"
    assert a["metadata"]["annotations"]["metallb.universe.tf/loadBalancerIPs"] == "192.168.68.100"
    assert b["spec"]["type"] == "ClusterIP" and "annotations" not in b["metadata"]


def test_the_rpc_server_runs_on_the_helper_and_admits_only_the_main_nodes_pod(
    files: dict[str, bytes],
) -> None:
    server = doc(files, "nodes/halo-b/rpc-server.yaml")
    pod = server["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "halo-b"}
    assert container["command"] == ["/usr/local/bin/rpc-server", "-H", "0.0.0.0", "-p", "50052", "-c"]
    assert container["ports"] == [{"name": "rpc", "containerPort": 50052, "protocol": "TCP"}]
    assert {"name": "HIP_VISIBLE_DEVICES", "value": "-1"} in container["env"]  # the cpu backend's
    service = doc(files, "nodes/halo-b/rpc-service.yaml")
    assert (
        service["metadata"]["name"] == "llama-swappo-halo-halo-b-rpc"
        and service["spec"]["type"] == "ClusterIP"
    )
    assert service["spec"]["selector"] == server["spec"]["selector"]["matchLabels"]
    policy = doc(files, "nodes/halo-b/rpc-networkpolicy.yaml")
    assert policy["spec"]["podSelector"] == {"matchLabels": server["spec"]["selector"]["matchLabels"]}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    main = doc(files, "nodes/halo-a/deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    assert source == {"podSelector": {"matchLabels": {"app": "llama-swappo-halo-halo-a"}}}
    assert source["podSelector"]["matchLabels"].items() <= main.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 50052}]


def test_kubectl_kustomize_builds_every_node(ggufs: Path, tmp_path: Path, files: dict[str, bytes]) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed: Flux builds out/ with kustomize"
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    for folder in (tmp_path, tmp_path / "pull"):
        done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(done.stdout))
        if folder == tmp_path:
            assert ("NetworkPolicy", "llama-swappo-halo-halo-b-rpc") in kinds
            assert [k for k in kinds if k[0] == "Deployment"] == [
                ("Deployment", "llama-swappo-halo-halo-a"),
                ("Deployment", "llama-swappo-halo-halo-b"),
                ("Deployment", "llama-swappo-halo-halo-b-rpc"),
            ]
        else:
            assert [k[0] for k in kinds].count("Job") == 2


def test_a_pinned_model_and_a_named_split_are_honoured(site: Path) -> None:
    model = site / "models.d" / "qwen2.5-coder-3b-instruct-q4_k_m.yaml"
    model.write_text(model.read_text() + "node: halo-b\n")
    big = site / "models.d" / f"{BIG}.yaml"
    big.write_text(big.read_text() + "split: [halo-b, halo-a]\n")
    compiled = compile_config(site)
    assert compiled.placement is not None
    assert compiled.placement.home["qwen2.5-coder-3b-instruct-q4_k_m"] == "halo-b"
    assert compiled.placement.splits[BIG].nodes == ("halo-b", "halo-a")
    assert compiled.placement.nodes["halo-a"].held[BIG] > 0


def test_a_split_over_a_gpu_backend_gives_the_helpers_share_first_and_offloads_all(site: Path) -> None:
    data = yaml.safe_load((site / "halogen.yaml").read_text())
    data["backends"]["rocm"]["supplementalGroups"] = [44, 109]
    data["nodes"]["halo-b"]["memoryBudget"] = "100Gi"  # unequal rooms, so the order shows
    (site / "halogen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    big = site / "models.d" / f"{BIG}.yaml"
    big.write_text(big.read_text().replace("backend: cpu", "backend: rocm"))
    files = build(site)[0]
    argv = list(resolve(Config.model_validate(doc(files, "nodes/halo-a/config.yaml"))).models[BIG].argv)
    assert argv[argv.index("--rpc") :][:6] == [
        "--rpc",
        "llama-swappo-halo-halo-b-rpc.default.svc.cluster.local:50052",
        "--n-gpu-layers",
        "all",
        "--tensor-split",
        "102400,122880",  # halo-b's rpc device first, then halo-a's own GPU (src/llama.cpp)
    ]
    pod = doc(files, "nodes/halo-b/rpc-server.yaml")["spec"]["template"]["spec"]
    assert pod["securityContext"]["supplementalGroups"] == [44, 109]
    assert {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v} == {"/dev/dri", "/dev/kfd"}


def test_when_nothing_fits_the_build_refuses_with_each_nodes_numbers(site: Path) -> None:
    two_nodes(
        site, {"halo-a": {"memoryBudget": "60Gi", "frontDoor": True}, "halo-b": {"memoryBudget": "60Gi"}}
    )
    with pytest.raises(Invalid) as raised:
        compile_config(site)
    [problem] = [d.text() for d in raised.value.diagnostics if d.severity == "error"]
    assert problem.startswith(f"models.d/{BIG}.yaml:3:1: contextSize: needs 129.4 GiB and fits on no node")
    assert (
        "fits on no node: halo-a: budget 60.0 GiB" in problem
        and "GiB short; halo-b: budget 60.0 GiB" in problem
    )
    assert "split it over several nodes" in problem


def test_the_pods_memory_limit_must_hold_each_nodes_budget(site: Path) -> None:
    data = yaml.safe_load((site / "halogen.yaml").read_text())
    data["deployment"]["resources"]["limits"]["memory"] = "32Gi"
    (site / "halogen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(Invalid) as raised:
        compile_config(site)
    said = [d.text() for d in raised.value.diagnostics if d.severity == "error"]
    assert said and all(
        "deployment.resources.limits.memory" in s and "is under the memoryBudget" in s for s in said
    )


def test_the_same_site_builds_the_same_bytes_whatever_order_the_model_files_were_written(
    site: Path, files: dict[str, bytes]
) -> None:
    folder = site / "models.d"
    texts = {p.name: p.read_text() for p in folder.iterdir()}
    for path in folder.iterdir():
        path.unlink()
    for name in sorted(texts, reverse=True):
        (folder / name).write_text(texts[name])
    assert build(site)[0] == files


@pytest.mark.parametrize("where", [".", "models.d"])
def test_halogen_build_runs_from_inside_a_two_node_site_without_flags(site: Path, where: str) -> None:
    done = subprocess.run([HALOGEN, "build"], cwd=site / where, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote out/" in done.stderr
    assert (site / "out" / "nodes" / "halo-b" / "rpc-networkpolicy.yaml").is_file()
    check = subprocess.run(
        [HALOGEN, "build", "--check"], cwd=site / where, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
    # `halogen serve` without --config finds no out/config.yaml in such a site: it says which
    # config to pass instead of failing to read one.
    serve = subprocess.run([HALOGEN, "serve"], cwd=site / where, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2, serve.stderr
    assert "holds a config per node: serve one with --config" in serve.stderr
    assert "(nodes: halo-a, halo-b)" in serve.stderr and "Traceback" not in serve.stderr


def test_halogen_fit_says_where_the_models_went_and_each_nodes_fit(site: Path) -> None:
    done = subprocess.run(
        [HALOGEN, "fit"], cwd=site / "models.d", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("placement:\n  halo-a (budget 120.0 GiB): ")
    assert f"{BIG}: split, llama-server on halo-a with 64.7 GiB, rpc-server on halo-b 64.7 GiB" in done.stdout
    assert "\nnode halo-b:\nmemory budget 55.3 GiB (memoryBudget); routing: fitted\n" in done.stdout
    as_json = subprocess.run(
        [HALOGEN, "fit", "--format", "json"], cwd=site, capture_output=True, text=True, timeout=120
    )
    document = yaml.safe_load(as_json.stdout)
    assert document["placement"]["splits"][BIG]["nodes"] == ["halo-a", "halo-b"]
    assert set(document["nodes"]) == {"halo-a", "halo-b"}


def test_a_helper_already_serving_a_split_model_is_refused_for_a_second(site: Path) -> None:
    for model_id in (BIG, "qwen2.5-coder-32b-instruct-q5_k_m"):
        path = site / "models.d" / f"{model_id}.yaml"
        path.write_text(path.read_text() + "split: [halo-a, halo-b]\n")
    with pytest.raises(Invalid) as raised:
        compile_config(site)
    [problem] = [d.text() for d in raised.value.diagnostics if d.severity == "error"]
    assert problem.startswith(
        "models.d/qwen2.5-coder-32b-instruct-q5_k_m.yaml:4:1: split: node 'halo-b' already runs the rpc-server of "
        f"'{BIG}', and an rpc-server serves one llama-server at a time"
    )


def test_each_node_gets_its_own_smoke_job_and_pod_monitor(site: Path) -> None:
    """The smoke Job checks each node's Service against that node's own config version (a
    node's peers' models are left to their own node's Job), and a PodMonitor sits beside each
    node's Deployment."""
    data = yaml.safe_load((site / "halogen.yaml").read_text())
    data["deployment"]["smoke"] = {"enabled": True}
    data["deployment"]["podMonitor"] = {"enabled": True}
    (site / "halogen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    files = build(site)[0]
    assert doc(files, "smoke/kustomization.yaml")["resources"] == ["halo-a", "halo-b"]
    for node in ("halo-a", "halo-b"):
        version = hashlib.sha256(files[f"nodes/{node}/config.yaml"]).hexdigest()
        job = doc(files, f"smoke/{node}/job.yaml")
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("--config-version") + 1] == version
        assert command[command.index("--") + 1] == f"http://llama-swappo-halo-{node}.default.svc:8080"
        assert job["metadata"]["name"].endswith(version[:10])
        assert "podmonitor.yaml" in doc(files, f"nodes/{node}/kustomization.yaml")["resources"]
        monitor = doc(files, f"nodes/{node}/podmonitor.yaml")
        assert monitor["spec"]["selector"]["matchLabels"] == {"app": f"llama-swappo-halo-{node}"}
        jsonschema.Draft7Validator(PODMONITOR_SCHEMA).validate(monitor)
