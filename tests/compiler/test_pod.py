"""The pod halogen writes runs with least privilege, and a GPU backend adds what it needs to it
(its devices or its extended resource, and the groups that open them), nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from halogen.diagnostics import Invalid
from halogen.pipeline import build

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


def test_a_gpu_backend_without_groups_is_warned_at_its_key_and_still_builds(tmp_path: Path) -> None:
    root = shipped_site(tmp_path / "devices", gpu_model=True)
    line = (root / "halogen.yaml").read_text().splitlines().index(DEVICES.rstrip("\n")) + 1
    _, diagnostics = deployment(root)
    (warning,) = diagnostics
    assert (warning.severity, warning.file, warning.line, warning.field) == (
        "warning",
        "halogen.yaml",
        line,
        "backends.rocm.devices",
    )
    assert "uid 10001" in warning.message and "supplementalGroups" in warning.hint
    plugin = shipped_site(
        tmp_path / "plugin", gpu_model=True, site_edit=(DEVICES, "    resources: {amd.com/gpu: 1}\n")
    )
    _, diagnostics = deployment(plugin)
    assert [(d.severity, d.field) for d in diagnostics] == [("warning", "backends.rocm.resources")]
    # A backend no model uses is no concern of the pod's.
    _, diagnostics = deployment(shipped_site(tmp_path / "unused"))
    assert diagnostics == []


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
