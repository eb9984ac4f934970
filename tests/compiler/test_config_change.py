"""What a config change does to the deployment (`deployment.onConfigChange`), and the smoke Job
that checks each config once Flux has applied it (`deployment.smoke`)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from halogen import cli
from halogen.compiler.pipeline import build
from halogen.diagnostics import Invalid
from halogen.llamaswap import io

from .conftest import MODEL, REPO, SITE, SiteTree

HALOGEN = Path(sys.executable).with_name("halogen")
TWO = {"tiny": MODEL, "small": {**MODEL, "file": "small.gguf"}}


def site_with(**deployment: Any) -> dict[str, Any]:
    return {**SITE, "deployment": {**SITE["deployment"], **deployment}}  # type: ignore[dict-item]


def built(t: SiteTree) -> dict[str, str]:
    files, _ = build(t.root)
    return {name: data.decode() for name, data in files.items()}


def pod_template(deployment: str) -> str:
    """The pod template's lines, as written: what Kubernetes compares to decide a rollout."""
    return deployment[deployment.index("\n  template:\n") :]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def edit_model(t: SiteTree, model_id: str, **keys: Any) -> None:
    path = t.root / "models.d" / f"{model_id}.yaml"
    t.model(model_id, {**yaml.safe_load(path.read_text()), **keys})


def edit_site(t: SiteTree, **deployment: Any) -> None:
    data = yaml.safe_load((t.root / "halogen.yaml").read_text())
    data["deployment"].update(deployment)
    t.site(data)


# --- onConfigChange ------------------------------------------------------------------------


def test_in_reload_mode_one_model_s_new_args_change_the_configmap_and_leave_the_pod_template_as_it_was(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site_with(onConfigChange="reload"), TWO)
    before = built(t)
    edit_model(t, "small", args=["--jinja"])
    after = built(t)
    assert after["config.yaml"] != before["config.yaml"]
    assert pod_template(after["deployment.yaml"]) == pod_template(before["deployment.yaml"])
    for files in (before, after):
        version = sha256(files["config.yaml"])
        deployment = yaml.safe_load(files["deployment.yaml"])
        configmap = yaml.safe_load(files["configmap.yaml"])
        assert deployment["metadata"]["annotations"]["config-version"] == version
        assert configmap["metadata"]["annotations"]["config-version"] == version
        assert configmap["data"]["config.yaml"] == files["config.yaml"]
        assert "annotations" not in deployment["spec"]["template"]["metadata"]
        # Mounted as a folder under a name that never changes: the kubelet updates it in place.
        [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"] == "llm-config"
        [mount] = [
            m
            for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            if m["name"] == "config"
        ]
        assert "subPath" not in mount
        for manifest in (deployment, configmap):
            kubernetes_validate.validate(manifest, "1.32", strict=True)


def test_in_reload_mode_a_new_image_changes_the_pod_template(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(onConfigChange="reload"), TWO)
    before = built(t)
    edit_site(t, image={"tag": "1.2.4"})
    after = built(t)
    assert after["config.yaml"] == before["config.yaml"]
    assert pod_template(after["deployment.yaml"]) != pod_template(before["deployment.yaml"])


@pytest.mark.parametrize("mode", [None, "restart"])
def test_in_restart_mode_and_without_the_key_the_pod_template_carries_the_config_s_hash(
    tree: Callable[..., SiteTree], mode: str | None
) -> None:
    t = tree(site_with(onConfigChange=mode) if mode else SITE, TWO)
    before = built(t)
    edit_model(t, "small", args=["--jinja"])
    after = built(t)
    assert pod_template(after["deployment.yaml"]) != pod_template(before["deployment.yaml"])
    for files in (before, after):
        deployment = yaml.safe_load(files["deployment.yaml"])
        configmap = yaml.safe_load(files["configmap.yaml"])
        assert deployment["spec"]["template"]["metadata"]["annotations"] == {
            "config-version": sha256(files["config.yaml"])
        }
        assert "annotations" not in deployment["metadata"]
        assert "config-version" not in configmap["metadata"]["annotations"]


def test_a_site_without_the_key_builds_byte_for_byte_as_with_restart(tree: Callable[..., SiteTree]) -> None:
    assert built(tree(SITE, TWO)) == built(tree(site_with(onConfigChange="restart"), TWO))


def test_an_unknown_mode_is_refused_at_its_line(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(onConfigChange="hot"), TWO)
    with pytest.raises(Invalid) as caught:
        build(t.root)
    [problem] = caught.value.diagnostics
    assert problem.field == "deployment.onConfigChange"
    assert "'restart' or 'reload'" in problem.message
    line = (t.root / "halogen.yaml").read_text().splitlines()[problem.line - 1]
    assert line.strip() == "onConfigChange: hot"


# --- the smoke Job -------------------------------------------------------------------------


def smoke_of(files: dict[str, str]) -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(files["smoke/job.yaml"])
    return job


def test_without_smoke_out_has_no_smoke_folder(tree: Callable[..., SiteTree]) -> None:
    files = built(tree(site_with(onConfigChange="reload"), TWO))
    assert not [name for name in files if name.startswith("smoke/")]


def test_the_smoke_job_checks_this_config_on_the_service_and_fails_at_once(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site_with(smoke={"enabled": True, "models": ["tiny"], "wait": 120, "timeout": 900}), TWO)
    files = built(t)
    version = sha256(files["config.yaml"])
    job = smoke_of(files)
    kubernetes_validate.validate(job, "1.32", strict=True)
    assert job["metadata"]["name"] == f"llm-smoke-{version[:10]}"
    assert job["metadata"]["namespace"] == "ai"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 900
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == [
        "halogen",
        "smoke",
        "--config-version",
        version,
        "--wait",
        "120",
        "--format",
        "table",
        "--",
        "http://llm.ai.svc:8080",
        "tiny",
    ]
    # The command line is one `halogen smoke` takes: its own parser reads the URL and the models.
    parsed = cli.main.commands["smoke"].make_context("smoke", container["command"][2:])
    assert parsed.params["url"] == "http://llm.ai.svc:8080" and parsed.params["models"] == ("tiny",)
    assert parsed.params["config_version"] == version
    deployment = yaml.safe_load(files["deployment.yaml"])
    proxy_pod = deployment["spec"]["template"]["spec"]
    assert container["image"] == proxy_pod["containers"][0]["image"]
    assert pod["securityContext"] == proxy_pod["securityContext"]
    assert container["securityContext"] == proxy_pod["containers"][0]["securityContext"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    # The Service selects the proxy's pods by `app`: the Job's pod must not carry it.
    assert "app" not in spec["template"]["metadata"]["labels"]
    # The proxy answers under the name the Job calls it by.
    command = proxy_pod["containers"][0]["command"]
    assert "llm.ai.svc" in [command[i + 1] for i, word in enumerate(command) if word == "--allow-host"]


def test_the_smoke_job_s_name_changes_with_the_config(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(smoke={"enabled": True}), TWO)
    before = smoke_of(built(t))["metadata"]["name"]
    edit_model(t, "small", args=["--jinja"])
    after = built(t)
    assert smoke_of(after)["metadata"]["name"] != before
    assert smoke_of(after)["metadata"]["name"] == f"llm-smoke-{sha256(after['config.yaml'])[:10]}"


def test_the_smoke_job_sends_the_clients_key_from_the_secret_the_deployment_reads(
    tree: Callable[..., SiteTree],
) -> None:
    keys = [{"secret": "llm-keys", "key": "token", "env": "LLM_API_KEY"}]
    files = built(tree({**site_with(smoke={"enabled": True}), "apiKeys": keys}, TWO))
    [env] = smoke_of(files)["spec"]["template"]["spec"]["containers"][0]["env"]
    deployment = yaml.safe_load(files["deployment.yaml"])
    [proxy_env] = [
        e
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "LLM_API_KEY"
    ]
    assert env == {"name": "HALOGEN_API_KEY", "valueFrom": proxy_env["valueFrom"]}
    assert env["valueFrom"] == {"secretKeyRef": {"name": "llm-keys", "key": "token"}}


def test_the_smoke_folder_passes_kubectl_kustomize(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(onConfigChange="reload", smoke={"enabled": True}), TWO)
    result = subprocess.run([str(HALOGEN), "build"], cwd=t.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed: Flux builds out/smoke with kustomize"
    done = subprocess.run(
        [kubectl, "kustomize", str(t.out / "smoke")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [job] = list(yaml.safe_load_all(done.stdout))
    assert job["kind"] == "Job" and job["metadata"]["name"].startswith("llm-smoke-")
    # out/'s own kustomization leaves the Job to its own Flux Kustomization.
    assert "smoke" not in (t.out / "kustomization.yaml").read_text()


def test_a_smoke_model_the_site_does_not_serve_is_an_error_at_its_line(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(smoke={"enabled": True, "models": ["tiny", "smal"]}), TWO)
    result = subprocess.run(
        [str(HALOGEN), "validate"], cwd=t.root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    lines = (t.root / "halogen.yaml").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if text.strip() == "- smal")
    column = 1 + lines[line - 1].index("smal")
    assert (
        f"halogen.yaml:{line}:{column}: deployment.smoke.models[1]: 'smal' is no model the site serves "
        "(did you mean 'small'?)"
    ) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_smoke_model_may_be_an_alias_a_variant_or_a_selector(tree: Callable[..., SiteTree]) -> None:
    models = {
        "tiny": {**MODEL, "aliases": ["t"], "variants": {"hot": {"temperature": 1.0}}},
        "small": TWO["small"],
    }
    site = {
        **site_with(smoke={"enabled": True, "models": ["t", "tiny:hot", "pick", "tiny:latest"]}),
        "selectors": {"pick": {"strategy": "pin", "targets": ["tiny"]}},
    }
    assert smoke_of(built(tree(site, models)))["spec"]["template"]["spec"]["containers"][0]["command"][
        -6:
    ] == ["--", "http://llm.ai.svc:8080", "t", "tiny:hot", "pick", "tiny:latest"]


def test_a_smoke_deadline_shorter_than_its_wait_is_refused(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(smoke={"enabled": True, "wait": 600, "timeout": 600}), TWO)
    with pytest.raises(Invalid) as caught:
        build(t.root)
    [problem] = caught.value.diagnostics
    assert problem.field == "deployment.smoke"
    assert "timeout (600s) must be longer than wait (600s)" in problem.message


# --- what halogen build says -----------------------------------------------------------------


def run_build(cwd: Path) -> str:
    result = subprocess.run([str(HALOGEN), "build"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("where", [".", "models.d"])
def test_halogen_build_says_whether_a_build_rolls_the_pod_or_reloads_the_config(
    tree: Callable[..., SiteTree], where: str
) -> None:
    t = tree(site_with(onConfigChange="reload"), TWO)
    cwd = t.root / where
    first = run_build(cwd)
    assert "rolls the pod" not in first and "keeps the pod" not in first  # nothing to compare with
    edit_model(t, "small", args=["--jinja"])
    assert "halogen: this build keeps the pod: the kubelet updates its config file" in run_build(cwd)
    edit_site(t, image={"tag": "1.2.4"})
    said = run_build(cwd)
    assert (
        "halogen: this build rolls the pod (every model loads again): "
        "spec.template.spec.containers[0].image changed"
    ) in said
    assert "keeps the pod" not in said
    unchanged = run_build(cwd)
    assert "rolls the pod" not in unchanged and "keeps the pod" not in unchanged


def test_in_restart_mode_halogen_build_says_the_config_rolls_the_pod_and_how_to_avoid_it(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(SITE, TWO)
    run_build(t.root)
    edit_model(t, "small", args=["--jinja"])
    assert (
        "rolls the pod (every model loads again): spec.template.metadata.annotations.config-version "
        "changed; with deployment.onConfigChange: reload the config would change in place"
    ) in run_build(t.root)
    edit_site(t, onConfigChange="reload")  # the switch itself rolls the pod once
    assert "spec.template.metadata.annotations changed" in run_build(t.root)


def test_a_long_deployment_name_leaves_the_smoke_job_s_pods_a_valid_name(
    tree: Callable[..., SiteTree],
) -> None:
    name = "a" * 51 + "b"  # the longest name deployment.name takes
    job = smoke_of(built(tree(site_with(name=name, smoke={"enabled": True}), TWO)))
    # The Job's pods are named <job>-<5 characters>, and carry the Job's name as a label (63 at most).
    assert job["metadata"]["name"].startswith("a" * 40 + "-smoke-")
    assert len(job["metadata"]["name"]) + 6 <= 63


def test_serve_loads_out_s_config_under_the_version_build_annotated(tree: Callable[..., SiteTree]) -> None:
    t = tree(site_with(onConfigChange="reload"), TWO)
    run_build(t.root)
    resolved, _ = io.load(t.out / "config.yaml")
    deployment = yaml.safe_load((t.out / "deployment.yaml").read_text())
    configmap = yaml.safe_load((t.out / "configmap.yaml").read_text())
    assert resolved.config_version == deployment["metadata"]["annotations"]["config-version"]
    # What the kubelet writes into the pod is the ConfigMap's text: the same bytes, the same hash.
    assert sha256(configmap["data"]["config.yaml"]) == resolved.config_version


def seconds(duration: str) -> int:
    """A Flux duration such as 35m or 1h."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def test_flux_runs_the_shipped_smoke_job_after_the_deployment_and_outwaits_its_deadline() -> None:
    docs = {
        d["metadata"]["name"]: d["spec"]
        for d in yaml.safe_load_all((REPO / "docs" / "flux" / "kustomization.yaml").read_text())
    }
    smoke = docs["llm-site-smoke"]
    assert smoke["path"] == "./out/smoke" and smoke["dependsOn"] == [{"name": "llm-site"}]
    assert smoke["wait"] is True and smoke["force"] is True and smoke["prune"] is True
    job = yaml.safe_load((REPO / "out" / "smoke" / "job.yaml").read_text())
    kubernetes_validate.validate(job, "1.32", strict=True)
    assert seconds(smoke["timeout"]) > job["spec"]["activeDeadlineSeconds"]
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed: Flux builds out/smoke with kustomize"
    done = subprocess.run(
        [kubectl, "kustomize", str(REPO / "out" / "smoke")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [d["kind"] for d in yaml.safe_load_all(done.stdout)] == ["Job"]


@pytest.mark.parametrize(
    "held",
    [b"spec: [\n", b"- a list\n", b"just text\n", b"spec: {}\n", b"\xff\xfe not UTF-8\n"],
    ids=["broken YAML", "a list", "a string", "no template", "not UTF-8"],
)
def test_an_out_deployment_that_cannot_be_read_gives_no_verdict_and_is_replaced(
    tree: Callable[..., SiteTree], held: bytes
) -> None:
    t = tree(site_with(onConfigChange="reload"), TWO)
    run_build(t.root)
    (t.out / "deployment.yaml").write_bytes(b"# Generated by halogen\n" + held)
    said = run_build(t.root)
    assert "rolls the pod" not in said and "keeps the pod" not in said
    assert "Traceback" not in said
    assert yaml.safe_load((t.out / "deployment.yaml").read_text())["kind"] == "Deployment"
