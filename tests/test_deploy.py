"""The Kubernetes manifests (deploy/kubernetes): rendered with kustomize and checked against the
Kubernetes API schemas offline (kubernetes-validate ships them); no cluster is involved."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32"


def _render() -> list[dict]:
    """`kubectl kustomize` where kubectl is installed; else the listed resources as they are (the
    kustomization only adds a label and image names, which the tests below do not depend on)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True
        ).stdout
        return list(yaml.safe_load_all(out))
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [
        doc for name in kustomization["resources"] for doc in yaml.safe_load_all((BASE / name).read_text())
    ]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in _render()}


def test_every_resource_matches_the_kubernetes_schema(resources):
    assert len(resources) == 8
    for doc in resources.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_wrong_field(resources):
    broken = copy.deepcopy(resources[("Deployment", "vaani-triton")])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomize_renders_with_the_project_labels(resources):
    if not shutil.which("kubectl"):
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    for doc in resources.values():
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vaani"


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_triton_gpu_health_repository_and_admin_key(resources):
    triton = resources[("Deployment", "vaani-triton")]
    container = _container(triton)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/asr/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/models/asr/ready"
    assert "--model-repository=$(MODEL_REPOSITORY)" in container["args"]
    config = resources[("ConfigMap", "vaani-triton")]
    assert config["data"]["MODEL_REPOSITORY"] == "/models"
    volumes = {v["name"]: v for v in triton["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-repository"]["persistentVolumeClaim"]["claimName"] == "vaani-model-repository"
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    restricted = [a for a in container["args"] if "restricted" in a]
    assert len(restricted) == 2
    for flag in restricted:
        apis, _, credential = flag.split("=", 1)[1].partition(":")
        assert set(apis.split(",")) == {"model-repository", "shared-memory", "logging", "trace"}
        assert credential == "admin-key=$(TRITON_ADMIN_KEY)"
    (key,) = [e for e in container["env"] if e["name"] == "TRITON_ADMIN_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "vaani-admin"


def test_services_select_their_pods(resources):
    for name in ("vaani-triton", "vaani-gateway"):
        service = resources[("Service", name)]
        pod_labels = resources[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        named = {p["name"] for p in _container(resources[("Deployment", name)])["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named


def test_metrics_are_scraped_and_drive_the_autoscaler(resources):
    annotations = resources[("Deployment", "vaani-triton")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8002"
    hpa = resources[("HorizontalPodAutoscaler", "vaani-triton")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vaani-triton",
    }
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    rules = yaml.safe_load(resources[("ConfigMap", "vaani-prometheus-adapter-rules")]["data"]["config.yaml"])
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == name
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]


def test_gateway_is_its_own_deployment_in_front_of_triton(resources):
    gateway = _container(resources[("Deployment", "vaani-gateway")])
    assert gateway["command"][:2] == ["vaani", "gateway"]
    assert gateway["command"][gateway["command"].index("--triton-url") + 1] == "vaani-triton:8001"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "nvidia.com/gpu" not in gateway["resources"].get("limits", {})
