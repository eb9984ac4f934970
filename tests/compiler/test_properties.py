"""Properties of every valid site, on sites hypothesis makes up: the build is deterministic,
what it writes validates, and config.yaml read back means what the input said."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halogen import yamlio
from halogen.compiler.pipeline import build
from halogen.image import LLAMA_SERVER
from halogen.llamaswap import io as llamaswap_io

from .conftest import LLAMA_SWAP_SCHEMA

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BINARY = LLAMA_SERVER["rocm"]  # where the default image (base: rocm) has llama-server
HOST = "127.0.0.1"

ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
KEY = st.from_regex(r"[a-z][a-z0-9_-]{0,9}", fullmatch=True)  # backend and group ids
K8S = st.from_regex(r"[a-z]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
ENV_NAME = st.from_regex(r"[A-Z_][A-Z0-9_]{0,9}", fullmatch=True)
PART = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._ -]{0,9}", fullmatch=True)  # never '.' or '..'
# Any text but lone surrogates; '$' is left out where llama-swap expands macros.
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="$"), max_size=24)
LINE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\x00$"), max_size=24)
ENV_VALUE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\x00"), max_size=24)
FLAGS: dict[str, st.SearchStrategy[str] | None] = {
    "--threads": st.integers(1, 64).map(str),
    "--batch-size": st.sampled_from(["256", "512", "2048"]),
    "--parallel": st.integers(1, 8).map(str),
    "--seed": st.integers(0, 2**31).map(str),
    "--flash-attn": st.sampled_from(["on", "off", "auto"]),
    "--jinja": None,
    "--no-warmup": None,
}
CAPABILITIES = ["completion", "tools", "insert", "vision", "embedding", "thinking"]


@dataclass(frozen=True)
class Site:
    halogen: dict[str, Any]
    models: dict[str, dict[str, Any]]


def _args(draw: st.DrawFn, taken: set[str]) -> list[str]:
    """Flags the backend does not already give, so none contradicts another."""
    names = draw(st.lists(st.sampled_from(sorted(set(FLAGS) - taken)), unique=True, max_size=3))
    out: list[str] = []
    for name in names:
        value = FLAGS[name]
        out += [name] if value is None else [name, draw(value)]
    return out


@st.composite
def backends(draw: st.DrawFn) -> dict[str, Any]:
    backend: dict[str, Any] = {"binary": BINARY, "args": _args(draw, set())}
    backend["env"] = draw(st.dictionaries(ENV_NAME, ENV_VALUE, max_size=3))
    backend["devices"] = draw(st.lists(st.sampled_from(["/dev/dri", "/dev/kfd"]), unique=True))
    # A backend with GPU devices must give the groups that own them (without the AMD device plugin).
    fewest = 1 if backend["devices"] else 0
    backend["supplementalGroups"] = draw(
        st.lists(st.integers(1, 65535), unique=True, min_size=fewest, max_size=2)
    )
    return backend


@st.composite
def models(
    draw: st.DrawFn,
    backend_args: dict[str, list[str]],
    backend_env: dict[str, dict[str, str]],
    groups: list[str],
    taken: set[str],
) -> dict[str, Any]:
    model: dict[str, Any] = {"file": "/".join(draw(st.lists(PART, min_size=1, max_size=3))) + ".gguf"}
    if len(backend_args) > 1 or draw(st.booleans()):
        model["backend"] = draw(st.sampled_from(sorted(backend_args)))
    backend = model.get("backend") or next(iter(backend_args))
    if draw(st.booleans()) and groups:
        model["group"] = draw(st.sampled_from(groups))
    length = draw(st.none() | st.integers(1, 1 << 20))
    size = draw(st.none() | st.integers(1, length or 1 << 20))
    if size is not None:
        model["contextSize"] = size
    metadata: dict[str, Any] = {
        key: draw(LINE)
        for key in ("architecture", "family", "parameterSize", "quantizationLevel")
        if draw(st.booleans())
    }
    if length is not None:
        metadata["contextLength"] = length
    model["metadata"] = metadata
    model["capabilities"] = draw(st.lists(st.sampled_from(CAPABILITIES), unique=True))
    model["args"] = _args(draw, {a for a in backend_args[backend] if a.startswith("-")})
    inherited = sorted(backend_env[backend])  # a model may override what its backend sets
    names = st.sampled_from(inherited) | ENV_NAME if inherited else ENV_NAME
    model["env"] = draw(st.dictionaries(names, ENV_VALUE, max_size=3))
    aliases = draw(st.lists(ID.filter(lambda a: a.lower() not in taken), unique_by=str.lower, max_size=3))
    taken.update(a.lower() for a in aliases)
    model["aliases"] = aliases
    for key, value in (
        ("name", draw(TEXT)),
        ("description", draw(TEXT)),
        ("ttl", draw(st.none() | st.integers(0, 10**6))),
        ("unlisted", draw(st.none() | st.booleans())),
    ):
        if value is not None:
            model[key] = value
    return model


@st.composite
def sites(draw: st.DrawFn) -> Site:
    declared_backends = draw(st.dictionaries(KEY, backends(), min_size=1, max_size=3))
    groups = draw(
        st.dictionaries(
            KEY,
            st.fixed_dictionaries(
                {"swap": st.booleans(), "exclusive": st.booleans(), "persistent": st.booleans()}
            ),
            max_size=3,
        )
    )
    ids = draw(st.lists(ID, min_size=1, max_size=5, unique_by=str.lower))
    taken = {i.lower() for i in ids}
    backend_args = {bid: b["args"] for bid, b in declared_backends.items()}
    backend_env = {bid: b["env"] for bid, b in declared_backends.items()}
    model_files = {mid: draw(models(backend_args, backend_env, sorted(groups), taken)) for mid in ids}
    names = ids + [a for m in model_files.values() for a in m["aliases"]]
    service: dict[str, Any] = {"type": draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))}
    if service["type"] == "LoadBalancer" and draw(st.booleans()):
        service["address"] = f"192.168.68.{draw(st.integers(1, 254))}"
    deployment = {
        "name": draw(K8S),
        "namespace": draw(K8S),
        "image": {"tag": draw(st.from_regex(r"[0-9]\.[0-9]{1,2}\.[0-9]", fullmatch=True))},
        "kubernetesVersion": draw(st.sampled_from(["1.30", "1.32", "1.34", "1.37"])),
        "strategy": draw(st.sampled_from(["auto", "RollingUpdate", "Recreate"])),
        "models": {
            "hostPath": "/srv/" + draw(PART),
            "mountPath": draw(st.sampled_from(["/models", "/data/m/"])),
        },
        "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": f"{draw(st.integers(2, 128))}Gi"}},
        "service": service,
        "env": draw(st.dictionaries(ENV_NAME, LINE, max_size=2)),
    }
    swap = {
        "healthCheckTimeout": draw(st.integers(15, 600)),
        "globalTTL": draw(st.integers(0, 10**5)),
        "unloadTimeout": draw(st.integers(1, 50)),  # under the 60 s grace period, less 5
        "startPort": draw(st.integers(1024, 7000)),  # never reaching the proxy's 8080
        "logLevel": draw(st.sampled_from(["debug", "info", "warn", "error"])),
        "includeAliasesInList": draw(st.booleans()),
        "preload": draw(st.lists(st.sampled_from(names), unique=True, max_size=2)),
    }
    site = {"deployment": deployment, "llamaSwap": swap, "groups": groups, "backends": declared_backends}
    return Site(site, model_files)


# YAML 1.2 reads JSON; the characters YAML folds or refuses raw are written as escapes.
_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _yaml(data: Any) -> str:
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False, indent=2))


@contextmanager
def written(site: Site, *, reverse: bool = False) -> Iterator[Path]:
    """The site in a fresh folder; `reverse` writes the model files, and the keys in every
    file, in the opposite order."""

    def flip(value: Any) -> Any:
        if isinstance(value, dict) and reverse:
            return {k: flip(v) for k, v in reversed(value.items())}
        return value

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "models.d").mkdir()
        (root / "halogen.yaml").write_text(_yaml(flip(site.halogen)))
        order = list(site.models)
        for model_id in reversed(order) if reverse else order:
            (root / "models.d" / f"{model_id}.yaml").write_text(_yaml(flip(site.models[model_id])))
        yield root


@EXAMPLES
@given(sites())
def test_a_site_builds_the_same_bytes_every_time_whatever_order_its_files_are_written_in(site: Site) -> None:
    with written(site) as root:
        first, _ = build(root)
        again, _ = build(root)
    with written(site, reverse=True) as root:
        reordered, _ = build(root)
    assert first == again == reordered


SCHEMA = json.loads(LLAMA_SWAP_SCHEMA.read_text())


@EXAMPLES
@given(sites())
def test_what_a_valid_site_builds_passes_llama_swaps_schema_and_strict_kubernetes_validation(
    site: Site,
) -> None:
    with written(site) as root:
        files, _ = build(root)
    text = {name: data.decode() for name, data in files.items()}
    config = yaml.safe_load(text["config.yaml"])
    jsonschema.Draft7Validator(SCHEMA).validate(config)
    # YAML 1.1 (PyYAML, Kubernetes) and 1.2 (ruamel, halogen serve) read the same config.
    assert config == yamlio.load(files["config.yaml"], "config.yaml").data
    version = site.halogen["deployment"]["kubernetesVersion"]
    manifests = {
        name: yaml.safe_load(text[name]) for name in ("configmap.yaml", "deployment.yaml", "service.yaml")
    }
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, version, strict=True)
    assert manifests["configmap.yaml"]["data"]["config.yaml"] == text["config.yaml"]
    assert yaml.safe_load(text["kustomization.yaml"])["resources"] == sorted(manifests)
    strategy = site.halogen["deployment"]["strategy"]
    if strategy == "auto":
        strategy = "Recreate" if site.halogen["llamaSwap"]["preload"] else "RollingUpdate"
    assert manifests["deployment.yaml"]["spec"]["strategy"]["type"] == strategy


def _expected_argv(site: Site, model_id: str, port: int) -> list[str]:
    model = site.models[model_id]
    backends_ = site.halogen["backends"]
    backend = backends_[model.get("backend") or next(iter(backends_))]
    mount = site.halogen["deployment"]["models"]["mountPath"].rstrip("/")
    argv = [backend["binary"], "--port", str(port), "--host", HOST, *backend["args"]]
    argv += ["-m", f"{mount}/{model['file']}"]
    if "contextSize" in model:
        argv += ["--ctx-size", str(model["contextSize"])]
    return [*argv, *model["args"]]


@EXAMPLES
@given(sites())
def test_config_yaml_read_back_holds_the_models_groups_and_commands_the_input_implies(site: Site) -> None:
    with written(site) as root:
        files, _ = build(root)
        (root / "config.yaml").write_bytes(files["config.yaml"])
        resolved, warnings = llamaswap_io.load(root / "config.yaml", environ={})
    assert warnings == []  # halogen writes no key that llama-swap ignores
    swap = site.halogen["llamaSwap"]
    assert sorted(resolved.models) == sorted(site.models)
    for port, model_id in enumerate(sorted(site.models), start=swap["startPort"]):  # llama-swap's order
        model, runnable = site.models[model_id], resolved.models[model_id]
        backend = site.halogen["backends"][model.get("backend") or next(iter(site.halogen["backends"]))]
        assert list(runnable.argv) == _expected_argv(site, model_id, port)
        assert dict(runnable.env) == {**backend["env"], **model["env"]}
        assert [name for name, _ in runnable.env] == sorted(dict(runnable.env))
        assert runnable.aliases == tuple(sorted(model["aliases"]))
        assert runnable.ttl == model.get("ttl", swap["globalTTL"])
        assert runnable.unlisted == model.get("unlisted", False)
        assert (runnable.name, runnable.description) == (model.get("name", ""), model.get("description", ""))
        metadata = dict(model["metadata"])
        if model["capabilities"]:
            metadata["capabilities"] = model["capabilities"]
        assert dict(runnable.metadata) == metadata
    grouped = {
        gid: sorted(m for m in site.models if site.models[m].get("group") == gid)
        for gid in site.halogen["groups"]
    }
    expected = {
        gid: (flags, members) for gid, flags in site.halogen["groups"].items() if (members := grouped[gid])
    }
    ungrouped = sorted(m for m in site.models if "group" not in site.models[m])
    if ungrouped:
        expected["(default)"] = ({"swap": True, "exclusive": True, "persistent": False}, ungrouped)
    assert {
        gid: ({"swap": g.swap, "exclusive": g.exclusive, "persistent": g.persistent}, list(g.members))
        for gid, g in resolved.groups.items()
    } == expected
    owner = {a: mid for mid, m in site.models.items() for a in [mid, *m["aliases"]]}
    assert list(resolved.preload) == [owner[name] for name in swap["preload"]]
    assert resolved.include_aliases_in_list == swap["includeAliasesInList"]
