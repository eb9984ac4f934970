"""Model sources, and the pull Job that out/pull/ carries for them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import yaml

from halogen.compiler.site.lock import Lock, LockedFile, write_lock

from .conftest import MODEL, REPO, SITE, SiteTree, halogen

REL = "Org/Repo-GGUF/model-q4_k_m.gguf"


def sourced(tree: Callable[..., SiteTree], **model: Any) -> SiteTree:
    site: dict[str, Any] = {**SITE}
    return tree(site, {"m": {**MODEL, "file": REL, **model}})


def built(t: SiteTree) -> dict[str, Any]:
    result = halogen("build", "--src", t.root)
    assert result.returncode == 0, result.stderr
    return {
        "job": yaml.safe_load((t.out / "pull" / "job.yaml").read_text()),
        "sources": yaml.safe_load(
            yaml.safe_load((t.out / "pull" / "sources.yaml").read_text())["data"]["sources.yaml"]
        ),
        "deployment": yaml.safe_load((t.out / "deployment.yaml").read_text()),
    }


def test_a_file_path_that_reads_org_repo_file_is_fetched_from_that_repository_at_main(
    tree: Callable[..., SiteTree],
) -> None:
    out = built(sourced(tree))
    assert out["sources"]["files"] == {
        REL: {"repo": "Org/Repo-GGUF", "file": "model-q4_k_m.gguf", "revision": "main", "models": ["m"]}
    }


def test_a_split_gguf_is_one_model_with_every_part(tree: Callable[..., SiteTree]) -> None:
    out = built(sourced(tree, file="Org/Big-GGUF/Q8_0/big-q8_0-00001-of-00003.gguf"))
    files = out["sources"]["files"]
    assert sorted(files) == [f"Org/Big-GGUF/Q8_0/big-q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert {f["file"] for f in files.values()} == {f"Q8_0/big-q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)}


def test_naming_a_later_part_of_a_split_gguf_is_an_error_at_the_file(tree: Callable[..., SiteTree]) -> None:
    t = sourced(tree, file="Org/Big-GGUF/big-00002-of-00003.gguf")
    result = halogen("validate", t.root)
    assert result.returncode == 1
    assert "models.d/m.yaml:2:1: file: file names part 00002 of a split GGUF" in result.stderr, result.stderr


def test_a_source_without_repo_needs_a_path_that_names_one(tree: Callable[..., SiteTree]) -> None:
    t = sourced(tree, file="model.gguf", source={"revision": "main"})
    result = halogen("validate", t.root)
    assert result.returncode == 1
    assert (
        "source.repo is not given and `file` (model.gguf) does not read <org>/<repo>/<file>" in result.stderr
    )


def test_an_explicit_source_names_repo_file_and_commit(tree: Callable[..., SiteTree]) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    t = sourced(
        tree, file="mine/model.gguf", source={"repo": "A/B", "file": "x/model.gguf", "revision": commit}
    )
    files = built(t)["sources"]["files"]
    assert files == {
        "mine/model.gguf": {"repo": "A/B", "file": "x/model.gguf", "revision": commit, "models": ["m"]}
    }


def test_a_model_without_a_source_has_no_pull_job(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    assert halogen("build", "--src", t.root).returncode == 0
    assert not (t.out / "pull").exists()


def test_a_site_that_places_files_itself_can_turn_the_job_off(tree: Callable[..., SiteTree]) -> None:
    site = {**SITE, "deployment": {**SITE["deployment"]}}  # type: ignore[dict-item]
    site["deployment"]["models"] = {"hostPath": "/srv/models", "pull": {"enabled": False}}
    t = tree(site, {"m": {**MODEL, "file": REL}})
    assert halogen("build", "--src", t.root).returncode == 0
    assert not (t.out / "pull").exists()


def test_out_pull_is_replaced_whole_and_a_hand_written_file_in_it_is_refused(
    tree: Callable[..., SiteTree],
) -> None:
    t = sourced(tree)
    assert halogen("build", "--src", t.root).returncode == 0
    (t.out / "pull" / "extra.yaml").write_text("kind: Secret\n")
    refused = halogen("build", "--src", t.root)
    assert refused.returncode == 1
    assert "out/pull/extra.yaml: halogen did not write this file and will not replace it" in refused.stderr
    (t.out / "pull" / "extra.yaml").unlink()
    t.model("m", {**MODEL, "file": "local/model.gguf"})  # no source any more: out/pull/ goes
    assert halogen("build", "--src", t.root).returncode == 0
    assert not (t.out / "pull").exists()


def test_the_lock_gives_the_job_each_files_size_and_sha256(tree: Callable[..., SiteTree]) -> None:
    t = sourced(tree)
    write_lock(t.root / "halogen.lock", Lock({REL: LockedFile(1234, "ab" * 32)}))
    entry = built(t)["sources"]["files"][REL]
    assert (entry["size"], entry["sha256"]) == (1234, "ab" * 32)


def test_the_jobs_name_changes_when_a_source_changes_and_only_then(tree: Callable[..., SiteTree]) -> None:
    first = built(sourced(tree))
    again = built(sourced(tree))
    moved = built(sourced(tree, source={"revision": "0123456789abcdef0123456789abcdef01234567"}))
    renamed = built(sourced(tree, file="Org/Repo-GGUF/model-q5_k_m.gguf"))
    names = [o["job"]["metadata"]["name"] for o in (first, again, moved, renamed)]
    assert names[0] == names[1]
    assert len(set(names[1:])) == 3
    assert all(n.startswith("llm-pull-") and len(n) <= 63 for n in names)
    # The ConfigMap of sources goes with it: same name, immutable.
    volume = next(v for v in moved["job"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "sources")
    assert volume["configMap"]["name"] == names[2]


def test_the_job_is_the_only_writer_and_cleans_up_after_itself(tree: Callable[..., SiteTree]) -> None:
    out = built(sourced(tree))
    job = out["job"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:2] == ["halogen", "pull"]
    models = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert models["mountPath"] == "/models" and not models.get("readOnly")
    assert next(v for v in pod["volumes"] if v["name"] == "models")["hostPath"]["path"] == "/srv/models"
    deployment_mounts = out["deployment"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert next(m for m in deployment_mounts if m["name"] == "models")["readOnly"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "HF_TOKEN" not in {e["name"] for e in container["env"]}
    # The Service and the Deployment select by their labels: the Job's pod must match neither.
    selector = out["deployment"]["spec"]["selector"]["matchLabels"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/component"] == "pull"


def test_the_token_comes_from_the_secret_the_site_names_and_never_into_out(
    tree: Callable[..., SiteTree],
) -> None:
    site = {**SITE, "deployment": {**SITE["deployment"]}}  # type: ignore[dict-item]
    site["deployment"]["models"] = {
        "hostPath": "/srv/models",
        "pull": {"tokenSecret": "hf-token", "endpoint": "https://hub.example.org"},
    }
    t = tree(site, {"m": {**MODEL, "file": REL}})
    env = {e["name"]: e for e in built(t)["job"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert env["HF_ENDPOINT"]["value"] == "https://hub.example.org"


def test_the_shipped_pull_folder_passes_strict_validation_and_kustomize() -> None:
    for name in ("job.yaml", "sources.yaml"):
        kubernetes_validate.validate(
            yaml.safe_load((REPO / "out" / "pull" / name).read_text()), "1.32", strict=True
        )
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed: Flux builds out/pull with kustomize"
    result = subprocess.run(
        [kubectl, "kustomize", str(REPO / "out" / "pull")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(d["kind"] for d in yaml.safe_load_all(result.stdout)) == ["ConfigMap", "Job"]
    sources = yaml.safe_load(
        yaml.safe_load((REPO / "out" / "pull" / "sources.yaml").read_text())["data"]["sources.yaml"]
    )
    assert len(sources["files"]) == 5  # the seed's five models declare where they come from


def test_flux_applies_the_pull_job_before_the_deployment() -> None:
    docs = {
        d["metadata"]["name"]: d["spec"]
        for d in yaml.safe_load_all((REPO / "docs/flux/kustomization.yaml").read_text())
    }
    models, site = docs["llm-site-models"], docs["llm-site"]
    assert models["path"] == "./out/pull" and models["wait"] is True
    assert site["path"] == "./out" and site["dependsOn"] == [{"name": "llm-site-models"}]
