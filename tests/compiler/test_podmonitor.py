"""`deployment.podMonitor`: an optional Prometheus Operator PodMonitor in out/, checked against
the CRD's schema (the part halogen writes, kept in schemas/ with its source) and built by
`kubectl kustomize`; off by default, so a site without it writes the out/ it always has."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import REPO, SITE, SiteTree, halogen

SCHEMA = json.loads((REPO / "schemas" / "podmonitor.monitoring.coreos.com-v1.schema.json").read_text())


def monitored(**podmonitor: Any) -> dict[str, Any]:
    site = copy.deepcopy(SITE)
    site["deployment"]["podMonitor"] = {"enabled": True, **podmonitor}  # type: ignore[index]
    return site


def kustomized(out: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed: Flux builds out/ with kustomize"
    result = subprocess.run([kubectl, "kustomize", str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def test_an_enabled_podmonitor_scrapes_the_pods_metrics_port_and_passes_the_crds_schema_and_kustomize(
    tree: Callable[..., SiteTree],
) -> None:
    site = tree(monitored(interval="15s", scrapeTimeout="10s", labels={"release": "kube-prometheus-stack"}))
    (site.root / "models.d" / "sub").mkdir()
    result = halogen("build", cwd=site.root / "models.d" / "sub")  # from a sub-folder, as git finds .git
    assert result.returncode == 0, result.stderr
    monitor = yaml.safe_load((site.out / "podmonitor.yaml").read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(monitor)
    kustomization = yaml.safe_load((site.out / "kustomization.yaml").read_text())
    assert kustomization["resources"][-1] == "podmonitor.yaml"
    docs = {doc["kind"]: doc for doc in kustomized(site.out)}
    assert sorted(docs) == ["ConfigMap", "Deployment", "PodMonitor", "Service"]
    pod = docs["Deployment"]["spec"]["template"]
    # It selects the pod by its labels and scrapes the port the proxy listens on.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in [p["name"] for p in pod["spec"]["containers"][0]["ports"]]
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "15s", "10s")
    assert "authorization" not in endpoint
    assert monitor["metadata"]["namespace"] == "ai"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_with_api_keys_prometheus_sends_the_first_key_from_its_secret(tree: Callable[..., SiteTree]) -> None:
    data = monitored()
    data["apiKeys"] = [{"secret": "llm-keys", "key": "token", "env": "HALOGEN_KEY"}]
    site = tree(data)
    result = halogen("build", cwd=site.root)
    assert result.returncode == 0, result.stderr
    monitor = yaml.safe_load((site.out / "podmonitor.yaml").read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(monitor)
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "llm-keys", "key": "token"},
    }
    assert "PodMonitor" in [doc["kind"] for doc in kustomized(site.out)]


def test_without_the_key_no_podmonitor_is_written(tree: Callable[..., SiteTree]) -> None:
    site = tree()
    assert halogen("build", cwd=site.root).returncode == 0
    assert not (site.out / "podmonitor.yaml").exists()
    assert "podmonitor.yaml" not in (site.out / "kustomization.yaml").read_text()
    # Turned off again, the file goes: out/ holds only what halogen writes.
    (site.root / "halogen.yaml").write_text(yaml.safe_dump(monitored(enabled=False), sort_keys=False))
    assert halogen("build", cwd=site.root).returncode == 0
    assert not (site.out / "podmonitor.yaml").exists()


@pytest.mark.parametrize(
    ("podmonitor", "field", "words"),
    [
        ({"interval": "5 min"}, "deployment.podMonitor.interval", "a Prometheus duration"),
        ({"scrapeTimeout": ""}, "deployment.podMonitor.scrapeTimeout", ""),
        ({"labels": {"bad key!": "x"}}, "deployment.podMonitor.labels.bad key!", "a Kubernetes label key"),
        ({"labels": {"release": "a\nb"}}, "deployment.podMonitor.labels.release", "a Kubernetes label value"),
        ({"intervall": "1m"}, "deployment.podMonitor.intervall", "did you mean 'interval'?"),
    ],
)
def test_a_bad_podmonitor_value_is_an_error_at_its_line_and_nothing_is_written(
    tree: Callable[..., SiteTree], podmonitor: dict[str, Any], field: str, words: str
) -> None:
    site = tree(monitored(**podmonitor))
    result = halogen("build", cwd=site.root)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [row for row in result.stderr.splitlines() if field in row]
    assert line.startswith("halogen.yaml:") and words in line, line
    assert not site.out.exists()


def test_the_schema_refuses_what_the_crd_refuses() -> None:
    """The schema the tests check with can fail: a field the CRD does not know, a duration it
    does not take, a missing selector."""
    good = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "llm"},
        "spec": {"selector": {"matchLabels": {"app": "llm"}}, "podMetricsEndpoints": [{"port": "http"}]},
    }
    jsonschema.Draft7Validator(SCHEMA).validate(good)
    bad: list[dict[str, Any]] = [copy.deepcopy(good) for _ in range(3)]
    bad[0]["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    bad[1]["spec"]["podMetricsEndpoints"][0]["interval"] = "30 s"
    del bad[2]["spec"]["selector"]
    for doc in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(SCHEMA).validate(doc)
