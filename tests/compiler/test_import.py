"""`halogen import`: an existing llama-swap config, and the manifests it ran from, become a site
that builds, whose every model runs the same file, context and flags as before, and whose report
names each fix, each change and everything left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from halogen.compiler import pipeline
from halogen.compiler.site import flags
from halogen.importing import backends
from halogen.importing.site import import_site, write
from halogen.llamaswap import io as llamaswap_io
from halogen.llamaswap.resolved import Runnable

from .conftest import SEED_CONFIG, SHARED, halogen

SEED_K8S = SHARED / "reference" / "seed" / "k8s"
EXAMPLE = SHARED / "reference" / "llama-swap" / "config.example.yaml"
CONSOLE = Path(sys.executable).parent / "halogen"


def imported(tmp_path: Path, config: Path, manifests: Path | None = None) -> tuple[Path, list[str]]:
    """The written site and its notes as lines, built once."""
    result = import_site(config, manifests)
    root = tmp_path / "site"
    write(root, result.files)
    assert result.unexpected == []
    return root, [f"{n.kind}: {n.message}" for n in result.notes]


def runs(run: Runnable) -> tuple[str, dict[str, str | None], list[str | None]]:
    """What a model runs: the program, each flag at the value llama-server keeps, the rest."""
    named = {f.name: f.value for f in flags.parse(list(run.argv[1:])) if f.name}
    named.pop("--port", None)
    named.setdefault("--host", "127.0.0.1")
    return run.argv[0], named, [f.value for f in flags.parse(list(run.argv[1:])) if not f.name]


def built(root: Path) -> Any:
    files, _ = pipeline.build(root)
    out = root / "out"
    out.mkdir()
    for name, data in files.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    return out


def test_the_seed_imports_with_its_manifests_into_a_site_that_builds_and_runs_every_model_as_before(
    tmp_path: Path,
) -> None:
    root, _ = imported(tmp_path, SEED_CONFIG, SEED_K8S)
    out = built(root)
    before, _ = llamaswap_io.load(SEED_CONFIG)
    after, _ = llamaswap_io.load(out / "config.yaml")
    assert sorted(after.models) == sorted(before.models)
    for mid, old in before.models.items():
        program, old_flags, old_rest = runs(old)
        new_program, new_flags, new_rest = runs(after.models[mid])
        assert old_flags.pop("--host") == "0.0.0.0"  # the one intended difference: a seed bug fixed
        assert new_flags.pop("--host") == "127.0.0.1"
        assert (new_program, new_flags, new_rest) == (program, old_flags, old_rest), mid
        assert dict(after.models[mid].env) == dict(old.env) == {"HIP_VISIBLE_DEVICES": "-1"}
        assert after.models[mid].metadata["contextLength"] == old.metadata["contextLength"]
    assert {g: list(v.members) for g, v in after.groups.items()} == {"main": sorted(before.models)}


def test_the_seed_import_takes_the_deployment_from_its_manifests(tmp_path: Path) -> None:
    root, _ = imported(tmp_path, SEED_CONFIG, SEED_K8S)
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["deployment"] == {
        "name": "llama-swappo-halo",
        "namespace": "default",
        "terminationGracePeriodSeconds": 90,
        "port": 8080,
        "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "32Gi"}},
        "service": {"type": "LoadBalancer", "address": "192.168.68.100", "externalTrafficPolicy": "Cluster"},
        "models": {"hostPath": "/var/lib/llama-swappo/models", "mountPath": "/models"},
    }
    assert site["llamaSwap"] == {"healthCheckTimeout": 300, "globalTTL": 1800}
    assert site["backends"] == {
        "llama": {
            "binary": "/usr/local/bin/llama-server",
            "args": ["--n-gpu-layers", "0", "--batch-size", "512", "--ubatch-size", "512", "--threads", "4"],
            "env": {"HIP_VISIBLE_DEVICES": "-1"},
        }
    }
    model = yaml.safe_load((root / "models.d" / "qwen2.5-coder-7b-instruct-q5_k_m.yaml").read_text())
    assert model["file"] == "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q5_k_m.gguf"
    assert (model["backend"], model["group"], model["contextSize"]) == ("llama", "main", 32768)
    assert "args" not in model and "env" not in model


def test_the_seed_import_reports_each_known_bug_as_fixed(tmp_path: Path) -> None:
    root, notes = imported(tmp_path, SEED_CONFIG, SEED_K8S)
    fixed = "\n".join(n for n in notes if n.startswith("fixed: "))
    for bug in (
        "`ttl: 1800` is a key llama-swap ignores",
        "group 'embeddings' has no `members`",
        "`preload` is null",
        "config-version annotation sat on the Deployment",
        "mounted with subPath",
        "ran privileged",
        "Flux's variable substitution",
        "HIP_VISIBLE_DEVICES=-1 was repeated in every model",
        "overrode that with --n-gpu-layers 0",
        "llama-server listened on 0.0.0.0",
    ):
        assert bug in fixed
    assert ":latest" in "\n".join(notes)
    report = (root / "import-report.md").read_text()
    assert "## Fixed" in report and "`ttl: 1800`" in report
    assert "flag --host: '0.0.0.0' -> '127.0.0.1' (intended" in report
    assert "ttl: 0 -> 1800 (intended: the top-level `ttl` llama-swap ignored is globalTTL now)" in report
    assert "logRequests: true" in report  # kept raw: a key llama-swap ignores


def test_the_seed_imports_without_manifests_with_its_models_folder_as_the_mount(tmp_path: Path) -> None:
    root, notes = imported(tmp_path, SEED_CONFIG)
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["deployment"]["models"] == {"hostPath": "/models", "mountPath": "/models"}
    assert any("set deployment.models.hostPath" in n for n in notes)
    built(root)


def test_llama_swaps_example_imports_into_a_site_that_builds(tmp_path: Path) -> None:
    root, _ = imported(tmp_path, EXAMPLE)
    out = built(root)
    env = {"OPENROUTER_API_KEY": "k1", "API_KEY_1": "k2", "API_KEY_2": "k3"}
    env |= {"LLAMA_SWAP_API_KEY_1": "k4", "LLAMA_SWAP_API_KEY_2": "k5"}
    after, _ = llamaswap_io.load(out / "config.yaml", env)
    assert sorted(after.models) == ["docker-llama", "gpt-oss-120b"]
    model = yaml.safe_load((root / "models.d" / "gpt-oss-120b.yaml").read_text())
    assert (model["backend"], model["file"], model["contextSize"]) == (
        "latest-llama",
        "path/to/gpt-oss-120B.gguf",
        16384,
    )
    assert model["args"] == ["--temperature", "0.7"]
    assert model["variants"]["high"] == {"chat_template_kwargs": {"reasoning_effort": "high"}}
    assert model["llamaSwap"]["proxy"] == "http://127.0.0.1:8999"
    assert model["llamaSwap"]["compat"] == {"ignoreWebsockets": True}
    run = after.models["gpt-oss-120b"]
    port = run.proxy.rsplit(":", 1)[-1]  # the proxy is the model's own; ${PORT} is what cmd got
    assert port == "8999"
    assert run.metadata["note"].startswith("The gpt-oss-120b is running on port 1000")
    assert run.metadata["note"].endswith("temp=0.7, context=16384")
    assert run.capabilities.tools and run.timeouts.responseHeader == 60
    assert (
        "docker run --name docker-llama"
        in yaml.safe_load((root / "models.d" / "docker-llama.yaml").read_text())["cmd"]
    )
    assert set(after.peers) >= {"openrouter/z-ai/glm-4.7", "llama-swap-peer/model_a"}
    assert after.api_keys == ("k4", "k5", "k2", "k3")


def test_llama_swaps_example_reports_what_halogen_cannot_carry_and_keeps_it_raw(tmp_path: Path) -> None:
    root, notes = imported(tmp_path, EXAMPLE)
    text = "\n".join(notes)
    for key in ("captureBuffer", "ui", "performance"):
        assert f"`{key}`" not in text  # carried since issue 20: the site's llamaSwap globals
    assert "model 'unlisted-model' is left out" in text
    assert "group 'group1' names 'llama', no model" in text
    assert "a matrix beside `use: group` is not in use" in text
    report = (root / "import-report.md").read_text()
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["llamaSwap"]["captureBuffer"] == 15
    assert site["llamaSwap"]["performance"] == {"disabled": False, "every": "15s"}
    assert "ui" not in site["llamaSwap"]  # the example's session headers are the default
    assert "models_dir: ${env.HOME}/models" in report


def test_literal_api_keys_are_reported_and_never_written(tmp_path: Path) -> None:
    root, notes = imported(tmp_path, EXAMPLE)
    written = "\n".join(p.read_text() for p in root.rglob("*") if p.is_file())
    assert "sk-hunter2" not in written and "sk-gyCPiKUc" not in written
    assert sum(n.startswith("secret: a literal key") for n in notes) == 2
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["apiKeys"][0] == {
        "secret": "config-example-keys",
        "key": "LLAMA_SWAP_API_KEY_1",
        "env": "LLAMA_SWAP_API_KEY_1",
    }
    assert {"secret": "config-example-keys", "key": "API_KEY_1", "env": "API_KEY_1"} in site["apiKeys"]
    assert site["peers"]["openrouter"]["apiKey"]["env"] == "OPENROUTER_API_KEY"


def write_config(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


SERVER = "/usr/local/bin/llama-server --port ${PORT} -ngl 99 --threads 4"


def test_models_that_disagree_on_a_backend_flag_each_say_their_own(tmp_path: Path) -> None:
    config = {
        "macros": {"server": SERVER},
        "models": {
            "a": {"cmd": "${server} -m /models/a.gguf -c 4096"},
            "b": {"cmd": "${server} -m /models/b.gguf -c 8192 -ngl 0"},
        },
    }
    root, _ = imported(tmp_path, write_config(tmp_path, config))
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["backends"]["server"]["args"] == ["--threads", "4"]
    a = yaml.safe_load((root / "models.d" / "a.yaml").read_text())
    b = yaml.safe_load((root / "models.d" / "b.yaml").read_text())
    assert (a["args"], b["args"]) == (["-ngl", "99"], ["-ngl", "0"])
    assert (a["file"], a["contextSize"]) == ("a.gguf", 4096)


def test_a_matrix_is_written_with_model_ids_for_its_vars(tmp_path: Path) -> None:
    config = {
        "macros": {"server": SERVER},
        "models": {m: {"cmd": f"${{server}} -m /models/{m}.gguf -c 2048"} for m in ("big", "small", "tiny")},
        "routing": {
            "router": {
                "use": "matrix",
                "settings": {
                    "matrix": {
                        "vars": {"s": "small"},
                        "evict_costs": {"s": 5},
                        "sets": {"pair": "s & tiny", "alone": "big"},
                    }
                },
            }
        },
    }
    root, _ = imported(tmp_path, write_config(tmp_path, config))
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["matrix"] == {"sets": {"pair": "small & tiny", "alone": "big"}, "evictCosts": {"small": 5}}
    built(root)


def test_a_command_with_no_server_macro_is_kept_raw(tmp_path: Path) -> None:
    config = {"models": {"solo": {"cmd": "/opt/server --port ${PORT} -m /models/solo.gguf", "ttl": 30}}}
    root, notes = imported(tmp_path, write_config(tmp_path, config))
    model = yaml.safe_load((root / "models.d" / "solo.yaml").read_text())
    assert model == {"cmd": "/opt/server --port ${PORT} -m /models/solo.gguf\n", "ttl": 30}
    assert any(n.startswith("kept: kept as a raw `cmd`") for n in notes)


def test_import_never_overwrites_a_site(tmp_path: Path) -> None:
    target = tmp_path / "site"
    target.mkdir()
    (target / "halogen.yaml").write_text("# mine\n")
    result = halogen("import", SEED_CONFIG, target)
    assert result.returncode == 1
    assert "already exists: halogen import never overwrites a site" in result.stderr
    assert (target / "halogen.yaml").read_text() == "# mine\n"
    assert sorted(p.name for p in target.iterdir()) == ["halogen.yaml"]


def test_an_import_that_fails_to_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = import_site(SEED_CONFIG, None).files
    target = tmp_path / "existing"
    target.mkdir()
    import halogen.importing.site as site_module

    real = site_module.os.rename
    calls: list[str] = []

    def failing(src: Any, dst: Any) -> None:
        calls.append(str(dst))
        if str(dst).endswith("halogen.yaml"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(site_module.os, "rename", failing)
    with pytest.raises(OSError):
        write(target, files)
    assert list(target.iterdir()) == []
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [unclosed\n", "config.yaml:"),
        ("- a\n- b\n", "a llama-swap config is a mapping with a `models` key"),
        ("models:\n  a:\n    name: no command\n", "models.a.cmd"),
    ],
    ids=["not YAML", "not a mapping", "a model without cmd"],
)
def test_a_config_halogen_cannot_read_is_an_error_with_its_position_and_nothing_is_written(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write_config(tmp_path, text)
    result = halogen("import", config, tmp_path / "site")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "site").exists()


def test_macros_that_refer_to_each_other_in_a_cycle_import_no_model_and_say_why(tmp_path: Path) -> None:
    config = {"macros": {"a": "${b} x", "b": "${a} y"}, "models": {"m": {"cmd": "${a} --port ${PORT}"}}}
    result = halogen("import", write_config(tmp_path, config), tmp_path / "site")
    assert result.returncode == 1
    assert "no model could be imported" in result.stderr
    assert "model 'm' is left out" in result.stderr or "unknown macro" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "site").exists()


def test_a_huge_config_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: {}\n" + "#" * (2 * 1024 * 1024))
    result = halogen("import", config, tmp_path / "site")
    assert result.returncode == 1
    assert "over the 1048576 byte limit" in result.stderr


def test_manifests_that_are_not_yaml_are_an_error_naming_the_file(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "deployment.yaml").write_text("kind: Deployment\nspec: [\n")
    result = halogen("import", SEED_CONFIG, tmp_path / "site", "--manifests", k8s)
    assert result.returncode == 1
    assert "deployment.yaml:3:1: expected the node content" in result.stderr


def test_the_installed_command_imports_into_the_current_folder_of_a_git_repository(tmp_path: Path) -> None:
    repo = tmp_path / "flux"
    site = repo / "apps" / "llm"
    site.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    result = subprocess.run(
        [str(CONSOLE), "import", str(SEED_CONFIG)], cwd=site, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "wrote .: halogen.yaml, 5 model files in models.d/ and import-report.md" in result.stderr.replace(
        "wrote ./", "wrote ."
    )
    built_ = subprocess.run([str(CONSOLE), "build"], cwd=site, capture_output=True, text=True, timeout=120)
    assert built_.returncode == 0, built_.stderr
    assert (site / "out" / "config.yaml").is_file()


def test_the_help_shows_the_command_as_the_readme_writes_it() -> None:
    result = subprocess.run([str(CONSOLE), "import", "--help"], capture_output=True, text=True, timeout=60)
    assert "Usage: halogen import [OPTIONS] CONFIG [DIR]" in result.stdout
    assert "--manifests DIR" in result.stdout


def test_a_model_whose_command_needs_an_environment_variable_is_left_out_and_kept_raw(tmp_path: Path) -> None:
    config = {
        "macros": {"server": SERVER},
        "models": {
            "home": {"cmd": "${server} -m ${env.HOME}/m.gguf"},
            "kept": {"cmd": "${server} -m /models/k.gguf -c 1024"},
        },
    }
    root, notes = imported(tmp_path, write_config(tmp_path, config))
    assert sorted(p.name for p in (root / "models.d").iterdir()) == ["kept.yaml"]
    assert any("${env.HOME}, which the pod does not set" in n for n in notes)
    assert "${env.HOME}/m.gguf" in (root / "import-report.md").read_text()


def test_a_model_id_that_cannot_be_a_file_name_is_left_out_and_named(tmp_path: Path) -> None:
    config = {
        "macros": {"server": SERVER},
        "models": {
            "org/model": {"cmd": "${server} -m /models/o.gguf -c 1024"},
            "fine": {"cmd": "${server} -m /models/f.gguf -c 1024"},
        },
    }
    root, notes = imported(tmp_path, write_config(tmp_path, config))
    assert sorted(p.name for p in (root / "models.d").iterdir()) == ["fine.yaml"]
    assert any("model id 'org/model' cannot be a file name" in n for n in notes)


@pytest.mark.parametrize(
    ("base", "models", "expected"),
    [
        (
            ["-ngl", "-1", "-t", "4"],
            {"a": ["-ngl", "0"], "b": ["-ngl", "0", "--jinja"]},
            (["-ngl", "0", "-t", "4"], {"a": [], "b": ["--jinja"]}),
        ),
        (
            ["-ngl", "99", "-t", "4"],
            {"a": ["--n-gpu-layers", "0"], "b": []},
            (["-t", "4"], {"a": ["--n-gpu-layers", "0"], "b": ["-ngl", "99"]}),
        ),
        (["-t", "4"], {"a": ["--jinja"]}, (["-t", "4"], {"a": ["--jinja"]})),
    ],
    ids=["every model overrides alike", "the models disagree", "no override"],
)
def test_each_flag_is_said_in_one_place_with_the_value_llama_server_kept(
    base: list[str], models: dict[str, list[str]], expected: tuple[list[str], dict[str, list[str]]]
) -> None:
    folded = backends.fold(base, models)
    assert (folded.args, folded.models) == expected


def test_a_start_port_the_site_cannot_take_is_noted_and_the_default_used(tmp_path: Path) -> None:
    config = {
        "startPort": 80,
        "macros": {"server": SERVER},
        "models": {"a": {"cmd": "${server} -m /models/a.gguf -c 64"}},
    }
    root, notes = imported(tmp_path, write_config(tmp_path, config))
    assert "llamaSwap" not in yaml.safe_load((root / "halogen.yaml").read_text())
    assert any("startPort 80 is outside 1024-65000" in n for n in notes)


def test_the_same_config_imports_to_the_same_bytes() -> None:
    assert import_site(SEED_CONFIG, SEED_K8S).files == import_site(SEED_CONFIG, SEED_K8S).files


def test_a_literal_peer_key_becomes_a_secret_reference_and_is_reported(tmp_path: Path) -> None:
    config = {
        "macros": {"server": SERVER},
        "models": {"a": {"cmd": "${server} -m /models/a.gguf -c 64"}},
        "peers": {"box2": {"proxy": "http://box2.lan:8080", "apiKey": "sk-peer-secret", "models": ["q"]}},
    }
    root, notes = imported(tmp_path, write_config(tmp_path, config))
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["peers"]["box2"]["apiKey"] == {
        "secret": "config-keys",
        "key": "PEER_BOX2_API_KEY",
        "env": "PEER_BOX2_API_KEY",
    }
    assert "sk-peer-secret" not in "".join(p.read_text() for p in root.rglob("*") if p.is_file())
    assert any("--from-literal=PEER_BOX2_API_KEY=<the key>" in n for n in notes)


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "big.yaml").write_bytes(b"#" * (2 * 1024 * 1024))
    result = halogen("import", SEED_CONFIG, tmp_path / "site", "--manifests", k8s)
    assert result.returncode == 1
    assert "big.yaml: file is 2097152 bytes, over the 1048576 byte limit" in result.stderr


def test_manifests_with_several_documents_are_read_each_at_its_own_lines(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "all.yaml").write_text(
        "".join("---\n" + (SEED_K8S / name).read_text() for name in ("deployment.yaml", "service.yaml"))
        + "---\nkind: Broken\nspec: [\n"
    )
    result = halogen("import", SEED_CONFIG, tmp_path / "site", "--manifests", k8s)
    assert result.returncode == 1
    lines = (k8s / "all.yaml").read_text().count("\n")
    assert f"all.yaml:{lines + 1}:" in result.stderr
    (k8s / "all.yaml").write_text((k8s / "all.yaml").read_text().rsplit("---\n", 1)[0])
    root, _ = imported(tmp_path, SEED_CONFIG, k8s)
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    assert site["deployment"]["service"]["address"] == "192.168.68.100"
    assert site["deployment"]["models"]["hostPath"] == "/var/lib/llama-swappo/models"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/me/halogen:0.2.0", {"repository": "ghcr.io/me/halogen", "tag": "0.2.0"}),
        (
            "registry.lan:5000/halogen@sha256:" + "a" * 64,
            {"repository": "registry.lan:5000/halogen", "digest": "sha256:" + "a" * 64},
        ),
        ("ghcr.io/me/halogen:latest", {"repository": "ghcr.io/me/halogen"}),
        ("ghcr.io/mootikins/llama-swappo-halo:latest", None),
    ],
)
def test_a_pod_that_ran_halogen_keeps_its_image_pinned_and_any_other_gets_halogens(
    tmp_path: Path, image: str, expected: dict[str, str] | None
) -> None:
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "deployment.yaml").write_text(
        (SEED_K8S / "deployment.yaml")
        .read_text()
        .replace("ghcr.io/mootikins/llama-swappo-halo:latest", image)
    )
    root, _ = imported(tmp_path, SEED_CONFIG, k8s)
    deployment = yaml.safe_load((root / "halogen.yaml").read_text())["deployment"]
    assert deployment.get("image") == expected
