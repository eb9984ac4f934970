"""`halogen init [DIR]`, through the installed console script: a site in a sub-folder of a git
repository that validates and builds as written, its example model, the repository's pre-commit
hooks, CI workflow and Flux wiring; and never a file overwritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HALOGEN = Path(sys.executable).with_name("halogen")
SITE_FILES = ["halogen.yaml", "models.d/example.yaml", "docs/flux/kustomizations.yaml"]
TOP_FILES = [".pre-commit-config.yaml", ".github/workflows/halogen-check.yaml"]


def halogen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HALOGEN), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "flux"
    (root / "apps" / "llm").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_init_in_a_sub_folder_of_a_git_repository_writes_a_site_that_validates_and_builds(repo: Path) -> None:
    site = repo / "apps" / "llm"
    result = halogen(site, "init")
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()) == sorted(SITE_FILES)
    assert all((repo / f).is_file() for f in TOP_FILES)
    assert (
        "halogen: next: halogen add ORG/REPO/FILE.gguf; halogen lock --remote; halogen build" in result.stderr
    )
    spec = yaml.safe_load((site / "halogen.yaml").read_text())
    assert list(spec["backends"]) == ["cpu"] and "groups" not in spec
    assert spec["deployment"]["name"] == "llm"
    assert "--no-mmap" not in yaml.safe_dump(spec)
    for cwd in (site, site / "models.d"):
        for command in (["validate"], ["build"]):
            done = halogen(cwd, *command)
            assert done.returncode == 0, done.stderr
            assert (
                "example.yaml:1:1: warning: only comments: no model is served from this file" in done.stderr
            )
    assert (site / "out" / "deployment.yaml").is_file()
    # A new site reloads config changes in place, and checks each one with the smoke Job.
    assert spec["deployment"]["onConfigChange"] == "reload"
    deployment = yaml.safe_load((site / "out" / "deployment.yaml").read_text())
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
    assert deployment["metadata"]["annotations"]["config-version"]
    job = yaml.safe_load((site / "out" / "smoke" / "job.yaml").read_text())
    smoke = list(yaml.safe_load_all((site / "docs/flux/kustomizations.yaml").read_text()))[2]["spec"]
    assert smoke["path"] == "./apps/llm/out/smoke"
    # Flux gives up on the Kustomization only after the Job's own deadline.
    assert int(smoke["timeout"].removesuffix("m")) * 60 > job["spec"]["activeDeadlineSeconds"]


def test_init_dir_from_the_top_of_the_repository_names_the_site_in_the_wiring(repo: Path) -> None:
    result = halogen(repo, "init", "apps/llm")
    assert result.returncode == 0, result.stderr
    assert "halogen: wrote apps/llm/halogen.yaml" in result.stderr
    flux = list(yaml.safe_load_all((repo / "apps/llm/docs/flux/kustomizations.yaml").read_text()))
    assert [k["spec"]["path"] for k in flux] == [
        "./apps/llm/out/pull",
        "./apps/llm/out",
        "./apps/llm/out/smoke",
    ]
    assert {k["spec"]["sourceRef"]["name"] for k in flux} == {"flux-system"}
    assert flux[1]["spec"]["dependsOn"] == [{"name": flux[0]["metadata"]["name"]}]
    # The smoke check runs after the deployment, and its failure is the Kustomization's.
    smoke = flux[2]["spec"]
    assert smoke["dependsOn"] == [{"name": flux[1]["metadata"]["name"]}]
    assert smoke["wait"] is True and smoke["force"] is True
    workflow = yaml.safe_load((repo / ".github/workflows/halogen-check.yaml").read_text())
    # The documented workflow (docs/ci-workflow.yaml) is the one init writes for apps/llm.
    assert workflow == yaml.safe_load((REPO / "docs" / "ci-workflow.yaml").read_text())


def test_init_writes_the_hooks_this_repository_ships(repo: Path) -> None:
    assert halogen(repo, "init", "apps/llm").returncode == 0
    [entry] = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())["repos"]
    shipped = [h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())]
    assert [h["id"] for h in entry["hooks"]] == shipped
    assert (
        entry["repo"]
        in yaml.safe_load((REPO / "docs" / "ci-workflow.yaml").read_text())["jobs"]["check"]["steps"][2][
            "run"
        ]
    )


def test_the_example_model_uncommented_is_a_model_that_builds(repo: Path) -> None:
    site = repo / "apps" / "llm"
    assert halogen(site, "init").returncode == 0
    example = site / "models.d" / "example.yaml"
    lines = example.read_text().splitlines()
    blank = lines.index("#")
    example.write_text("\n".join(line.removeprefix("# ") for line in lines[blank + 1 :]) + "\n")
    result = halogen(site, "build")
    assert result.returncode == 0, result.stderr
    # The one warning a site without halogen.lock gets: memory not checked yet.
    assert [
        line for line in result.stderr.splitlines() if "warning" in line and "no halogen.lock" not in line
    ] == []
    assert (site / "out" / "pull" / "job.yaml").is_file()
    config = yaml.safe_load((site / "out" / "config.yaml").read_text())
    assert list(config["models"]) == ["example"]
    # llama-server's own /metrics is on, for halogen serve's /metrics to carry.
    assert "--metrics" in config["macros"]["cpu"].split()


def test_init_never_overwrites_a_file_and_then_writes_nothing(repo: Path) -> None:
    (repo / ".pre-commit-config.yaml").write_text("repos: []\n")
    site = repo / "apps" / "llm"
    result = halogen(site, "init")
    assert result.returncode == 1
    assert "../../.pre-commit-config.yaml: exists: init never overwrites a file" in result.stderr
    assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert (repo / ".pre-commit-config.yaml").read_text() == "repos: []\n"
    assert not any(site.iterdir()) and not (repo / ".github").exists()


def test_init_outside_a_git_repository_keeps_everything_in_the_site(tmp_path: Path) -> None:
    result = halogen(tmp_path, "init", "llm")
    assert result.returncode == 0, result.stderr
    site = tmp_path / "llm"
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()) == sorted(
        SITE_FILES + TOP_FILES
    )
    workflow = yaml.safe_load((site / ".github/workflows/halogen-check.yaml").read_text())
    assert workflow["jobs"]["check"]["steps"][-1]["run"] == "halogen build --check --format github ."
    flux = list(yaml.safe_load_all((site / "docs/flux/kustomizations.yaml").read_text()))
    assert flux[1]["spec"]["path"] == "./out"
    assert halogen(site, "build").returncode == 0


@pytest.mark.real
@pytest.mark.slow
def test_the_gpu_backend_init_suggests_is_one_the_real_llama_server_takes(
    repo: Path, llama_server: Path, smollm2_gguf: Path
) -> None:
    """Current llama.cpp refuses --no-mmap (`invalid argument`); the suggestion must start."""
    import time
    import urllib.request

    from tests.ports import free_ports

    assert halogen(repo, "init", "apps/llm").returncode == 0
    text = (repo / "apps/llm/halogen.yaml").read_text()
    uncommented = text.replace("  # gpu:", "  gpu:").replace("  #   ", "    ")
    (repo / "apps/llm/halogen.yaml").write_text(uncommented)
    assert halogen(repo / "apps/llm", "validate").returncode == 0
    args = yaml.safe_load(uncommented)["backends"]["gpu"]["args"]
    assert "--no-mmap" not in args and "--load-mode" in args
    [port] = free_ports(1)
    server = subprocess.Popen(
        [str(llama_server), *args, "-m", str(smollm2_gguf), "--ctx-size", "256", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[1][-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("llama-server never became healthy")
    finally:
        server.terminate()
        server.wait(30)
