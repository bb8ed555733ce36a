"""`make engine` route selection, its messages, and the Docker commands of the Docker route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaani.build.repository import RepositorySettings
from vaani.build.tensorrt import route as engine_command
from vaani.build.tensorrt.route import NoRoute, Route, WorkFiles, choose_route
from vaani.build.tensorrt.shape_profile import shape_profile
from vaani.cli import main


@pytest.mark.parametrize("has_docker", [True, False])
def test_local_when_tensorrt_and_gpu(has_docker):
    assert choose_route(True, True, has_docker) is Route.LOCAL


def test_docker_when_tensorrt_does_not_import():
    assert choose_route(False, True, True) is Route.DOCKER


@pytest.mark.parametrize(
    ("has_tensorrt", "has_gpu", "has_docker"),
    [
        (False, False, False),
        (True, False, False),
        (False, False, True),
        (False, True, False),
        (True, False, True),
    ],
)
def test_no_route_explains_both(has_tensorrt, has_gpu, has_docker):
    with pytest.raises(NoRoute) as error:
        choose_route(has_tensorrt, has_gpu, has_docker, tag="24.12")
    message = str(error.value)
    assert "1. here" in message and "2. in Docker" in message
    assert (
        "nvcr.io/nvidia/tensorrt:24.12-py3" in message and "nvcr.io/nvidia/tritonserver:24.12-py3" in message
    )
    assert "TRITON_TAG=24.12" in message and "NVIDIA Container Toolkit" in message
    assert ("imports" if has_tensorrt else "not importable") in message
    assert ("found" if has_gpu else "none found") in message


def test_one_variable_picks_both_images():
    assert engine_command.triton_tag({}) == engine_command.DEFAULT_TRITON_TAG
    assert engine_command.triton_tag({"TRITON_TAG": "25.03"}) == "25.03"


def test_docker_route_commands(tmp_path):
    files = WorkFiles(tmp_path / "results" / "engine" / "fp16")
    settings = RepositorySettings(engine="tensorrt", bucket_seconds=1.0)
    inner = engine_command.inner_arguments(files, "fp16", shape_profile(settings), 16_000, 0.0, tmp_path)
    build, run = engine_command.docker_commands("25.03", tmp_path, inner, 1000, 1000)
    assert build[:2] == ["docker", "build"] and "TRITON_TAG=25.03" in build and build[-1] == str(tmp_path)
    assert build[build.index("--file") + 1].endswith("docker/engine.Dockerfile")
    assert run[:3] == ["docker", "run", "--rm"] and run[run.index("--gpus") + 1] == "all"
    assert run[run.index("--user") + 1] == "1000:1000"
    assert f"{tmp_path.resolve()}:/workspace" in run
    assert run[run.index("vaani-engine:25.03") + 1 :][:3] == ["python3", "-m", "vaani.build.tensorrt.builder"]
    assert (
        inner[inner.index("--onnx") + 1] == "results/engine/fp16/model.fp16.onnx"
    )  # relative: valid in /workspace
    assert json.loads(inner[inner.index("--profile") + 1])["max_batch"] == settings.max_batch_size


def test_engine_dockerfile_uses_the_tag_argument():
    root = Path(__file__).resolve().parents[1]
    text = (root / "docker" / "engine.Dockerfile").read_text()
    assert f"ARG TRITON_TAG={engine_command.DEFAULT_TRITON_TAG}" in text
    assert "FROM nvcr.io/nvidia/tensorrt:${TRITON_TAG}-py3" in text


def test_vaani_engine_without_a_route_stops_with_the_message(monkeypatch, capsys):
    monkeypatch.setattr(engine_command, "tensorrt_importable", lambda: False)
    monkeypatch.setattr(engine_command, "gpu_info", lambda: None)
    monkeypatch.setattr(engine_command, "docker_available", lambda: False)
    assert main(["engine", "--model", "models/tiny-hindi", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "cannot build the TensorRT plan" in err and "2. in Docker" in err


def test_vaani_engine_refuses_settings_without_buckets(capsys):
    assert main(["engine", "--bucket-seconds", "0"]) == 2
    assert "bucket_seconds > 0" in capsys.readouterr().err


def test_serve_tensorrt_without_a_plan_names_the_next_command(tmp_path, capsys):
    assert main(["serve", "--engine", "tensorrt", "--repository", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "no TensorRT plan" in err and "make engine" in err and "docker compose up" in err


def test_serve_torch_without_a_gpu_names_the_next_command(monkeypatch, capsys):
    from vaani.build import engine_builds

    monkeypatch.setattr(engine_builds, "gpu_info", lambda: None)
    assert main(["serve", "--engine", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--engine onnxruntime" in err


def test_every_refusal_of_vaani_engine_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(engine_command, "tensorrt_importable", lambda: False)
    monkeypatch.setattr(engine_command, "gpu_info", lambda: None)
    monkeypatch.setattr(engine_command, "docker_available", lambda: False)
    for argv in (
        ["engine"],
        ["build", "--engine", "tensorrt", "--bucket-seconds", "1"],
        ["engine", "--bucket-seconds", "0"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
