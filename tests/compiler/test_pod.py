"""The pod halogen writes runs with least privilege, and a GPU backend adds what it needs to it
(its devices or its extended resource, and the groups that open them), nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from halogen.compiler.pipeline import build
from halogen.diagnostics import Invalid

from .conftest import copy_shipped

GROUPS = "    supplementalGroups: [109, 44]\n"
DEVICES = "    devices: [/dev/dri, /dev/kfd]\n"


def shipped_site(root: Path, *, gpu_model: bool = False, site_edit: tuple[str, str] | None = None) -> Path:
    """A copy of this repo's site; `gpu_model` moves one model onto the rocm backend."""
    copy_shipped(root)
    if site_edit is not None:
        text = (root / "halogen.yaml").read_text()
        assert site_edit[0] in text
        (root / "halogen.yaml").write_text(text.replace(site_edit[0], site_edit[1], 1))
    if gpu_model:
        model = root / "models.d" / "qwen2.5-coder-3b-instruct-q4_k_m.yaml"
        model.write_text(model.read_text().replace("backend: cpu", "backend: rocm", 1))
    return root


def deployment(root: Path) -> tuple[dict[str, Any], list[Any]]:
    files, diagnostics = build(root)
    manifest = yaml.safe_load(files["deployment.yaml"])
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    return manifest, list(diagnostics)


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_the_cpu_pod_runs_unprivileged_as_non_root_on_a_read_only_root(tmp_path: Path) -> None:
    manifest, diagnostics = deployment(shipped_site(tmp_path))
    assert diagnostics == []
    spec = pod(manifest)
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert not {"hostNetwork", "hostPID", "hostIPC", "initContainers"} & set(spec)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert volumes["models"]["hostPath"]["type"] == "Directory"
    assert sorted(volumes) == ["config", "models", "tmp"]  # no /dev from the host
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert mounts["config"]["readOnly"] is True and mounts["models"]["readOnly"] is True
    assert set(container["resources"]["limits"]) == {"memory"}


def test_a_gpu_backend_adds_its_devices_and_groups_and_nothing_else(tmp_path: Path) -> None:
    cpu, _ = deployment(shipped_site(tmp_path / "cpu"))
    gpu, diagnostics = deployment(
        shipped_site(tmp_path / "gpu", gpu_model=True, site_edit=(DEVICES, DEVICES + GROUPS))
    )
    assert diagnostics == []
    before, after = pod(cpu), pod(gpu)
    assert after["securityContext"] == {**before["securityContext"], "supplementalGroups": [44, 109]}
    added = [v for v in after["volumes"] if v not in before["volumes"]]
    assert added == [
        {"name": "dev-dri", "hostPath": {"path": "/dev/dri", "type": "Directory"}},
        {"name": "dev-kfd", "hostPath": {"path": "/dev/kfd", "type": "CharDevice"}},
    ]
    (was,), (now,) = before["containers"], after["containers"]
    assert [m for m in now["volumeMounts"] if m not in was["volumeMounts"]] == [
        {"name": "dev-dri", "mountPath": "/dev/dri"},
        {"name": "dev-kfd", "mountPath": "/dev/kfd"},
    ]
    assert now["securityContext"] == was["securityContext"]  # still unprivileged, no capability
    same = {k: v for k, v in now.items() if k != "volumeMounts"}
    assert same == {k: v for k, v in was.items() if k != "volumeMounts"}
    rest = {k: v for k, v in after.items() if k not in ("volumes", "securityContext", "containers")}
    assert rest == {k: v for k, v in before.items() if k not in ("volumes", "securityContext", "containers")}


def test_the_amd_device_plugin_replaces_host_devices_with_an_extended_resource(tmp_path: Path) -> None:
    plugin = "    resources: {amd.com/gpu: 1}\n" + GROUPS
    gpu, diagnostics = deployment(shipped_site(tmp_path, gpu_model=True, site_edit=(DEVICES, plugin)))
    assert diagnostics == []
    spec = pod(gpu)
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["amd.com/gpu"] == 1
    assert "amd.com/gpu" not in container["resources"].get("requests", {})
    assert sorted(v["name"] for v in spec["volumes"]) == ["config", "models", "tmp"]
    assert spec["securityContext"]["supplementalGroups"] == [44, 109]


def test_a_gpu_backend_without_groups_is_an_error_at_its_key(tmp_path: Path) -> None:
    # pre-commit and CI show no warning on success: a pod that cannot open its GPU must not build.
    root = shipped_site(tmp_path / "devices", gpu_model=True)
    line = (root / "halogen.yaml").read_text().splitlines().index(DEVICES.rstrip("\n")) + 1
    with pytest.raises(Invalid) as exc:
        build(root)
    (error,) = exc.value.diagnostics
    assert (error.severity, error.file, error.line, error.field) == (
        "error",
        "halogen.yaml",
        line,
        "backends.rocm.devices",
    )
    assert "uid 10001" in error.message and "supplementalGroups" in error.hint
    plugin = shipped_site(
        tmp_path / "plugin", gpu_model=True, site_edit=(DEVICES, "    resources: {amd.com/gpu: 1}\n")
    )
    with pytest.raises(Invalid) as exc:
        build(plugin)
    assert [(d.severity, d.field) for d in exc.value.diagnostics] == [("error", "backends.rocm.resources")]
    assert "devicePlugin: amd" in exc.value.diagnostics[0].hint
    # A backend no model uses is no concern of the pod's.
    _, diagnostics = deployment(shipped_site(tmp_path / "unused"))
    assert diagnostics == []


def test_a_site_running_the_amd_device_plugin_needs_no_groups_for_amd_gpu(tmp_path: Path) -> None:
    root = shipped_site(
        tmp_path,
        gpu_model=True,
        site_edit=(DEVICES, "    resources: {amd.com/gpu: 1}\n"),
    )
    text = (
        (root / "halogen.yaml").read_text().replace("deployment:\n", "deployment:\n  devicePlugin: amd\n", 1)
    )
    (root / "halogen.yaml").write_text(text)
    manifest, diagnostics = deployment(root)
    assert diagnostics == []
    assert "supplementalGroups" not in pod(manifest)["securityContext"]


def test_auto_strategy_recreates_a_pod_that_claims_an_extended_resource(tmp_path: Path) -> None:
    # RollingUpdate's surge pod would stay Pending on a one-GPU node, and every rollout stick.
    cpu, _ = deployment(shipped_site(tmp_path / "cpu"))
    assert cpu["spec"]["strategy"]["type"] == "RollingUpdate"
    plugin = "    resources: {amd.com/gpu: 1}\n" + GROUPS
    gpu, _ = deployment(shipped_site(tmp_path / "gpu", gpu_model=True, site_edit=(DEVICES, plugin)))
    assert gpu["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        (
            ("    devices: [/dev/dri, /dev/kfd]", "    devices: [/dev/../etc]"),
            "backends.rocm.devices[0]",
            "under /dev",
        ),
        (
            ("    devices: [/dev/dri, /dev/kfd]", "    devices: [/dev/dri/]"),
            "backends.rocm.devices[0]",
            "under /dev",
        ),
        (
            ("    devices: [/dev/dri, /dev/kfd]", "    devices: [dev/dri]"),
            "backends.rocm.devices[0]",
            "under /dev",
        ),
        (
            ("    devices: [/dev/dri, /dev/kfd]", "    resources: {amd.com/gpus: 1}"),
            "backends.rocm.resources",
            "did you mean amd.com/gpu?",
        ),
        (
            ("    devices: [/dev/dri, /dev/kfd]", "    resources: {gpu: 1}"),
            "backends.rocm.resources.gpu",
            "a domain, '/', a name",
        ),
        (
            ("    address: 192.168.68.100", "    address: 999.1.1.1"),
            "deployment.service.address",
            "not an IP address",
        ),
    ],
)
def test_gpu_and_service_inputs_that_kubernetes_would_misread_are_refused(
    tmp_path: Path, edit: tuple[str, str], field: str, says: str
) -> None:
    root = shipped_site(tmp_path, site_edit=edit)
    with pytest.raises(Invalid) as exc:
        build(root)
    (error,) = exc.value.diagnostics
    assert error.field == field and says in error.message + " " + error.hint, error


def test_the_proxy_drains_for_what_the_grace_period_leaves_after_the_shutdown(tmp_path: Path) -> None:
    manifest, _ = deployment(shipped_site(tmp_path / "shipped"))
    spec = pod(manifest)
    (container,) = spec["containers"]
    # 90 s of grace: 5 s preStop sleep, up to 10 s (unloadTimeout) to stop the models, 5 s margin.
    assert spec["terminationGracePeriodSeconds"] == 90
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert container["command"][-2:] == ["--drain", "70"]
    grace = "  terminationGracePeriodSeconds: 90\n"
    manifest, _ = deployment(shipped_site(tmp_path / "bare", site_edit=(grace, grace.replace("90", "20"))))
    assert "--drain" not in pod(manifest)["containers"][0]["command"]
    with pytest.raises(Invalid) as refused:
        build(shipped_site(tmp_path / "short", site_edit=(grace, grace.replace("90", "19"))))
    (error,) = refused.value.diagnostics
    assert error.field == "deployment.terminationGracePeriodSeconds" and "at least 20" in error.hint


def test_origins_the_site_allows_reach_the_proxy_s_command_line(tmp_path: Path) -> None:
    grace = "  terminationGracePeriodSeconds: 90\n"
    origins = grace + "  allowOrigins: [http://chat.lan:3000, https://notes.example]\n"
    manifest, _ = deployment(shipped_site(tmp_path / "allowed", site_edit=(grace, origins)))
    command = pod(manifest)["containers"][0]["command"]
    assert command[command.index("--allow-origin") :] == [
        "--allow-origin",
        "http://chat.lan:3000",
        "--allow-origin",
        "https://notes.example",
        "--drain",
        "70",
    ]
    with pytest.raises(Invalid) as refused:
        build(shipped_site(tmp_path / "bad", site_edit=(grace, grace + "  allowOrigins: [chat.lan/path]\n")))
    (error,) = refused.value.diagnostics
    assert error.field == "deployment.allowOrigins[0]"


def test_the_proxy_answers_under_the_service_s_names_its_address_and_the_kubelet_s_probes(
    tmp_path: Path,
) -> None:
    """The Deployment's own command line, run on loopback: the names the cluster's DNS gives
    the Service, the names the site allows and every address (the LoadBalancer's, the pod's,
    which the kubelet's probes send) are answered; another name is a 403 (DNS rebinding)."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from tests.ports import free_ports
    from tests.runtime.processes import stop_serving, wait_healthy

    grace = "  terminationGracePeriodSeconds: 90\n"
    root = shipped_site(
        tmp_path / "site", site_edit=(grace, grace + "  allowHosts: [chat.lan, .home.arpa]\n")
    )
    files, _ = build(root)
    (root / "config.yaml").write_bytes(files["config.yaml"])
    manifest = yaml.safe_load(files["deployment.yaml"])
    command = list(pod(manifest)["containers"][0]["command"])
    assert command[:2] == ["halogen", "serve"]
    (port,) = free_ports(1)
    command[0] = str(Path(sys.executable).with_name("halogen"))
    command[command.index("--config") + 1] = str(root / "config.yaml")
    command[command.index("--listen") + 1] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def status(path: str, host: str) -> int:
        request = urllib.request.Request(url + path, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        wait_healthy(process, url, log.read_text)
        name = "llama-swappo-halo"
        answered = [
            name,
            f"{name}:8080",
            f"{name}.default",
            f"{name}.default.svc:8080",
            f"{name}.default.svc.cluster.local:8080",
            "192.168.68.100:8080",  # the Service's LoadBalancer address
            "chat.lan:8080",
            "nas.home.arpa",
        ]
        assert {host: status("/v1/models", host) for host in answered} == dict.fromkeys(answered, 200)
        assert status("/health", "10.244.0.5:8080") == 200  # the kubelet's probe: the pod's IP
        assert status("/v1/models", f"evil.example:{port}") == 403
        assert status("/v1/models", f"{name}.evil.example") == 403
    finally:
        stop_serving(process)
