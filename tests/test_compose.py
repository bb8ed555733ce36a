"""The compose files, GPU and CPU: `docker-compose config` (no daemon needed) plus structural checks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vaani.build.tensorrt.route import DEFAULT_TRITON_TAG
from vaani.stack import probes
from vaani.stack.check import LOCUST, LOCUST_REQUEST_TYPES, SERVING, CheckSettings, ComposeCheck
from vaani.stack.images import DEFAULT_BASE, PROJECT_IMAGES

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def triton(compose) -> dict:
    return compose["services"]["triton"]


def _compose_binary() -> list[str]:
    """Debian's docker-compose (v1) validates without a daemon; `make setup` installs it."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose not installed: run `make setup` (Debian package docker-compose)"
    return [binary]


def test_compose_config_validates():
    command = [*_compose_binary(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    result = subprocess.run(
        [*command, "--profile", "locust", "--profile", "perf", "config", "--services"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert services == {"triton", "prometheus", "grafana", "locust-master", "locust-worker", "perf"}


def test_triton_reserves_gpus_shm_ports_and_health(triton):
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert triton["shm_size"] in ("2gb", "2g") or int(triton["shm_size"]) >= 1 << 30
    published = {port.rsplit(":", 1)[1] for port in triton["ports"]}
    assert published == {"8000", "8001", "8002"}
    health = triton["healthcheck"]
    assert "/v2/models/asr/ready" in " ".join(health["test"])
    assert health["start_period"]
    assert "./model_repository:/models:ro" in triton["volumes"]


def test_triton_restricts_apis_and_checks_the_plan(triton):
    command = triton["command"]
    assert command[0] == "tritonserver"
    assert "--model-control-mode=none" in command
    assert "--metrics-config=summary_latencies=true" in command
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        value = next(c for c in command if c.startswith(flag + "="))
        apis, _, credential = value.split("=", 1)[1].partition(":")
        assert set(apis.split(",")) == {"model-repository", "shared-memory"}
        assert credential == "admin-key=$${TRITON_ADMIN_KEY}"  # compose turns $$ into $; plan_guard fills it
    assert triton["entrypoint"][:3] == ["python3", "-m", "vaani.build.tensorrt.plan_guard"]


def test_one_triton_tag_for_server_sdk_and_engine(compose, triton):
    default = f"${{TRITON_TAG:-{DEFAULT_TRITON_TAG}}}"
    assert triton["build"]["args"]["TRITON_TAG"] == default
    assert compose["services"]["perf"]["image"] == f"nvcr.io/nvidia/tritonserver:{default}-py3-sdk"
    dockerfile = (ROOT / triton["build"]["dockerfile"]).read_text()
    assert f"ARG TRITON_TAG={DEFAULT_TRITON_TAG}" in dockerfile
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3" in dockerfile


def test_server_image_installs_only_the_base_project():
    dockerfile = (DOCKER / "triton.Dockerfile").read_text()
    installs = [i.strip() for i in re.findall(r"pip install ([^\n\\&]+)", dockerfile)]
    assert installs == ["."]  # no [serve]: no onnxruntime, no pytriton; no torch


def test_load_generators_point_at_triton(compose):
    services = compose["services"]
    master, worker, perf = services["locust-master"], services["locust-worker"], services["perf"]
    assert master["profiles"] == ["locust"] and worker["profiles"] == ["locust"]
    assert "--locustfile=/mnt/locust/locustfile.py" in master["command"] and "--master" in master["command"]
    assert "./loadtest:/mnt/locust:ro" in master["volumes"]
    assert "--host=http://triton:8000" in master["command"]
    assert "--master-host=locust-master" in worker["command"]
    assert perf["profiles"] == ["perf"] and perf["command"][0] == "perf_analyzer"
    assert "--url=triton:8001" in perf["command"] and "--model-name=asr" in perf["command"]


def test_prometheus_scrapes_triton_metrics(compose):
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]
    ]
    assert targets == ["triton:8002"]
    assert (
        "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in compose["services"]["prometheus"]["volumes"]
    )


def test_grafana_provisioning_and_dashboard(compose):
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./docker/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    source = datasource["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/vaani.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DOCKER / "grafana/dashboards/vaani.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "nv_inference_request_success",
        'nv_inference_request_summary_us{quantile="0.5"}',
        'nv_inference_request_summary_us{quantile="0.99"}',
        "nv_inference_queue_duration_us",
        "rate(nv_inference_count[1m])) / sum by (model) (rate(nv_inference_exec_count[1m]))",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
    ):
        assert metric in queries, metric
    assert all(p["datasource"]["uid"] == source["uid"] for p in dashboard["panels"])


# ---- the CPU flavour (docker-compose.cpu.yml); `make compose-check` runs it for real -------------

CPU_FILE = ROOT / "docker-compose.cpu.yml"


def _cpu_config(**env: str) -> dict:
    """The CPU compose file as docker-compose resolves it, with ``env`` set."""
    result = subprocess.run(
        [*_compose_binary(), "--project-directory", str(ROOT), "-f", str(CPU_FILE), "config"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _published(service: dict) -> list[str]:
    return [
        port if isinstance(port, str) else f"{port['host_ip']}:{port['published']}"
        for port in service.get("ports", [])
    ]


def test_cpu_stack_services_and_binding():
    """Localhost by default; VAANI_BIND publishes the gateway alone, the door for untrusted clients,
    while Triton's and Prometheus's ports follow VAANI_INTERNAL_BIND."""
    env = {k: v for k, v in os.environ.items() if k not in ("VAANI_BIND", "VAANI_INTERNAL_BIND")}
    services = _cpu_config(**env)["services"]
    assert set(services) == {*SERVING, *LOCUST}
    published = [p for s in services.values() for p in _published(s)]
    assert published and all(p.startswith("127.0.0.1:") for p in published)
    exposed = _cpu_config(**env, VAANI_BIND="0.0.0.0")["services"]
    public = {name for name, s in exposed.items() if any(p.startswith("0.0.0.0:") for p in _published(s))}
    assert public == {"gateway"}
    inside = _cpu_config(**env, VAANI_INTERNAL_BIND="10.0.0.5")["services"]
    internal = _published(inside["triton"]) + _published(inside["prometheus"])
    assert internal and all(p.startswith("10.0.0.5:") for p in internal)


def test_cpu_triton_is_vaani_serve_with_health_and_limits():
    cpu = yaml.safe_load(CPU_FILE.read_text())["services"]
    triton = cpu["triton"]
    assert triton["command"][:3] == ["vaani", "serve", "--skip-build"]
    assert "--address=0.0.0.0" in triton["command"] and "--engine=onnxruntime" in triton["command"]
    assert "TRITON_ADMIN_KEY" in triton["environment"]
    assert "/v2/models/asr/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["volumes"] == ["${VAANI_REPOSITORY:-./model_repository}:/models:ro"]
    for service in cpu.values():
        limits = service["ulimits"]
        assert limits["nofile"]["hard"] <= 20000 and limits["nproc"]["hard"] <= 8192
    assert "/-/ready" in " ".join(cpu["prometheus"]["healthcheck"]["test"])
    assert "/health" in " ".join(cpu["gateway"]["healthcheck"]["test"])


def test_cpu_gateway_and_locust_point_at_triton():
    cpu = yaml.safe_load(CPU_FILE.read_text())["services"]
    assert cpu["gateway"]["command"] == [
        "vaani", "gateway", "--triton-url", "triton:8001", "--host", "0.0.0.0", "--port", "8080"
    ]  # fmt: skip
    master = cpu["locust-master"]["command"]
    assert "--headless" in master and "--expect-workers=2" in master and "--csv=/results/locust" in master
    for worker in ("locust-worker-1", "locust-worker-2"):
        assert "--master-host=locust-master" in cpu[worker]["command"]


def test_cpu_images_build_on_a_debian_base_without_torch():
    cpu = yaml.safe_load(CPU_FILE.read_text())["services"]
    for spec in PROJECT_IMAGES:
        dockerfile = (ROOT / spec.dockerfile).read_text()
        assert f"ARG BASE_IMAGE={DEFAULT_BASE}" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile
        assert any(s["image"] == f"${{{spec.variable}:-{spec.tag}}}" for s in cpu.values())
    installs = re.findall(r"pip install ([^\n\\&]+)", (ROOT / PROJECT_IMAGES[0].dockerfile).read_text())
    assert [i.strip() for i in installs] == ['".[serve,loadtest,gateway]"']  # no [build]: no torch
    assert "prometheus" in (ROOT / PROJECT_IMAGES[1].dockerfile).read_text()


def _environment(dockerfile: Path) -> list[str]:
    """The ``NAME=value`` words of the ENV instructions of ``dockerfile``, continued lines joined."""
    lines = (ROOT / dockerfile).read_text().replace("\\\n", " ").splitlines()
    return [word for line in lines if line.startswith("ENV ") for word in line.split()[1:]]


def test_grpc_clients_resolve_triton_with_getaddrinfo(compose):
    """gRPC's c-ares resolver failed every gRPC user under podman (issue 18); getaddrinfo did not."""
    for dockerfile in (PROJECT_IMAGES[0].dockerfile, Path("docker/locust.Dockerfile")):
        assert "GRPC_DNS_RESOLVER=native" in _environment(dockerfile), dockerfile
    assert compose["services"]["perf"]["environment"]["GRPC_DNS_RESOLVER"] == "native"


def test_cpu_locust_runs_the_user_types_the_check_expects():
    """The check demands requests of each of LOCUST_REQUEST_TYPES: the master must run those users."""
    master = yaml.safe_load(CPU_FILE.read_text())["services"]["locust-master"]["command"]
    assert {"TritonHttpUser", "TritonGrpcUser"} <= set(master)
    locustfile = (ROOT / "loadtest" / "locustfile.py").read_text()
    assert all(f'request_type = "{kind}"' in locustfile for kind in LOCUST_REQUEST_TYPES)


# ---- how the compose check reads Locust's CSV: per request type, so no protocol fails unseen -----

STATS_HEADER = "Type,Name,Request Count,Failure Count\n"


def _locust_results(folder: Path, stats: str, failures: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "locust_stats.csv").write_text(STATS_HEADER + stats)
    (folder / "locust_failures.csv").write_text("Method,Name,Error,Occurrences\n" + failures)
    return folder


def test_locust_totals_per_request_type_ignore_the_aggregate(tmp_path):
    results = _locust_results(
        tmp_path,
        "triton-http,0-5 s,20,0\ntriton-http,5-10 s,30,0\ntriton-grpc,0-5 s,7,7\n,Aggregated,57,7\n",
    )
    assert probes.locust_by_type(results / "locust_stats.csv") == {
        "triton-http": (50, 0),
        "triton-grpc": (7, 7),
    }


def test_locust_errors_of_one_type_most_frequent_first(tmp_path):
    failures = (
        "triton-grpc,0-5 s,rare,1\ntriton-http,0-5 s,HTTP's,9\ntriton-grpc,5-10 s,DNS query cancelled,5\n"
    )
    results = _locust_results(tmp_path, "", failures)
    errors = probes.locust_errors(results / "locust_failures.csv", "triton-grpc")
    assert errors == ["DNS query cancelled", "rare"]
    assert probes.locust_errors(tmp_path / "absent.csv", "triton-grpc") == []


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ("triton-http,0-5 s,40,0\ntriton-grpc,0-5 s,38,0\n", []),
        (
            "triton-http,0-5 s,40,0\ntriton-grpc,0-5 s,38,38\n",
            ["triton-grpc: 38 of 38 requests failed (e.g. DNS query cancelled)"],
        ),
        ("triton-http,0-5 s,40,0\n", []),  # a worker whose reports were lost: a warning
        ("", ["no Locust request of any type"]),
    ],
)
def test_compose_check_fails_a_protocol_whose_locust_users_failed(tmp_path, stats, expected):
    results = _locust_results(tmp_path / "locust", stats, "triton-grpc,0-5 s,DNS query cancelled,38\n")
    assert ComposeCheck(CheckSettings(root=ROOT, output=tmp_path)).locust_problems(results) == expected
