"""`vaani build`: cached by content hash, and honest about an unreachable Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaani.build import source
from vaani.build.pipeline import STAMP, build, served_from
from vaani.build.repository import RepositorySettings
from vaani.errors import UserFacingError
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import (
    ACOUSTIC,
    DECODER,
    ENSEMBLE,
    ENSEMBLE_STEPS,
    PREPROCESS,
    SPEC_FILE,
    STREAM,
    WINDOWS_STEP,
    version_dir,
)

from .conftest import BUNDLED_MODEL


def test_second_build_is_a_no_op(tmp_path, capsys):
    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4)
    build(str(BUNDLED_MODEL), repository, settings)
    onnx_file = version_dir(repository, ACOUSTIC) / "model.onnx"
    first = onnx_file.stat().st_mtime_ns
    assert "parity PASS" in capsys.readouterr().out
    assert all((repository / step / "1" / "model.py").is_file() for step in (PREPROCESS, ACOUSTIC, DECODER))
    build(str(BUNDLED_MODEL), repository, settings)
    assert "nothing to do" in capsys.readouterr().out
    assert onnx_file.stat().st_mtime_ns == first
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=8))
    assert "max_batch_size: 8" in (repository / ENSEMBLE / "config.pbtxt").read_text()


def test_unreachable_hub_names_the_offline_model(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserFacingError, match="MODEL=models/tiny-hindi"):
        source.resolve("ai4bharat/indicwav2vec-hindi-not-cached")


def test_non_editable_install_builds_the_steps(tmp_path):
    """`pip install .` (not editable) carries the steps' `model.py`: `vaani build` installs them.

    The fresh environment borrows this one's dependencies through a path file, so only vaani
    itself is installed, from a wheel, as a user's `pip install .` would.
    """
    import shutil
    import site
    import subprocess
    import sys

    root = BUNDLED_MODEL.parents[1]
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    source_tree = tmp_path / "source"  # setuptools builds in the tree: keep the checkout clean
    shutil.copytree(root, source_tree, ignore=shutil.ignore_patterns(".*", "data", "results", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", purelib, str(source_tree)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    repository = tmp_path / "repo"
    code = (
        "import vaani, sys; assert 'site-packages' in vaani.__file__, vaani.__file__; "
        "from vaani.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [python, "-c", code, "build", "--model", str(BUNDLED_MODEL), "--repository", str(repository)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for step in (*ENSEMBLE_STEPS, STREAM):  # the tracked copies are what the build writes
        tracked = (root / "model_repository" / step / "1" / "model.py").read_bytes()
        assert (version_dir(repository, step) / "model.py").read_bytes() == tracked
    assert not (repository / WINDOWS_STEP).exists()  # a TensorRT plan's step only


def test_each_step_file_names_its_class(tmp_path):
    """Every step's `model.py` is one line importing its own class from a module that exists, so a
    reader of the repository sees what runs (`windows` too, written only beside a TensorRT plan)."""
    import importlib.util

    from vaani.build.pipeline import install_steps

    install_steps(tmp_path, "tensorrt")
    for step in (*ENSEMBLE_STEPS, WINDOWS_STEP):
        text = (version_dir(tmp_path, step) / "model.py").read_text()
        assert text == f"from vaani.serving.steps.{step} import TritonPythonModel  # noqa: F401\n"
        assert importlib.util.find_spec(f"vaani.serving.steps.{step}") is not None


def test_a_cache_hit_still_removes_a_step_the_engine_does_not_serve(tmp_path, capsys):
    """The second `make serve` of issue 18: `windows` (a TensorRT plan's step) left in the folder
    by another engine's build must go even when nothing else needs doing."""
    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4)
    build(str(BUNDLED_MODEL), repository, settings)
    leftover = version_dir(repository, WINDOWS_STEP)
    leftover.mkdir(parents=True)
    (leftover / "model.py").write_text("# a leftover of `make engine`\n")
    capsys.readouterr()
    build(str(BUNDLED_MODEL), repository, settings)
    assert "nothing to do" in capsys.readouterr().out
    assert not (repository / WINDOWS_STEP).exists()
    assert served_from(repository) == (ENSEMBLE, *ENSEMBLE_STEPS, STREAM)


def test_a_killed_build_is_rebuilt_by_the_next(tmp_path, capsys):
    """A build cut short (Ctrl-C, a kill) leaves no stamp behind, so the next one cannot take the
    half-written repository for the last complete build."""
    import signal
    import subprocess
    import sys
    import time

    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4, decoder="greedy")
    build(str(BUNDLED_MODEL), repository, settings)
    other = subprocess.Popen(
        [sys.executable, "-m", "vaani.cli", "build", "--model", str(BUNDLED_MODEL), "--repository",
         str(repository), "--max-batch-size", "4", "--decoder", "beam"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while (repository / STAMP).exists() and other.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    other.wait()
    assert not (repository / STAMP).exists(), "the other build finished before it could be killed"
    with pytest.raises(UserFacingError, match="no complete build"):
        served_from(repository)
    capsys.readouterr()
    build(str(BUNDLED_MODEL), repository, settings)
    assert "nothing to do" not in capsys.readouterr().out
    assert 'string_value: "greedy"' in (repository / DECODER / "config.pbtxt").read_text()


def test_the_server_loads_the_built_models_by_name(tmp_path):
    """No `--load-model=*`: a stray folder in the repository cannot stop a start."""
    from vaani.supervision.process import Ports, command

    repository = tmp_path / "repo"
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=4))
    (repository / "stray" / "1").mkdir(parents=True)
    flags = command(repository, Ports(), admin_key="k")
    loaded = [f.removeprefix("--load-model=") for f in flags if f.startswith("--load-model=")]
    assert loaded == [ENSEMBLE, *ENSEMBLE_STEPS, STREAM]


def test_a_failed_engine_build_leaves_the_served_repository_as_it_was(tmp_path, capsys):
    """`make engine` where no TensorRT can run stops before touching the repository."""
    from vaani.cli import main

    repository = tmp_path / "repo"
    settings = RepositorySettings(max_batch_size=4)
    build(str(BUNDLED_MODEL), repository, settings)
    code = main(["engine", "--model", str(BUNDLED_MODEL), "--repository", str(repository)])
    assert code != 0
    assert not (repository / WINDOWS_STEP).exists()
    capsys.readouterr()
    build(str(BUNDLED_MODEL), repository, settings)
    assert "nothing to do" in capsys.readouterr().out


def test_a_repository_without_a_build_is_served_by_the_models_named(tmp_path):
    """The GPU benchmark writes its configs without `vaani build`: it names what the server loads."""
    from vaani.build.repository import served_models
    from vaani.supervision.process import Ports, command

    repository = tmp_path / "repo"
    repository.mkdir()
    with pytest.raises(UserFacingError, match="no complete build"):
        command(repository, Ports(), admin_key="k")
    flags = command(repository, Ports(), admin_key="k", models=served_models("torch"))
    assert [f for f in flags if f.startswith("--load-model=")] == [
        f"--load-model={model}" for model in (ENSEMBLE, *ENSEMBLE_STEPS, STREAM)
    ]


def test_the_onnxruntime_engine_runs_each_row_alone_over_its_own_samples(tmp_path):
    """A batch's rows run one by one, trimmed to their valid samples: each row's logits are exactly
    those of the row by itself, and the frames past its samples are zero padding."""
    import numpy as np

    from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

    repository = tmp_path / "repo"
    build(str(BUNDLED_MODEL), repository, RepositorySettings(max_batch_size=4))
    folder = version_dir(repository, ACOUSTIC)
    spec = AcousticSpec.load(folder / SPEC_FILE)
    engine = OnnxRuntimeEngine(folder / "model.onnx", threads=1, frames=spec.frames)
    samples = 40_000
    rng = np.random.default_rng(0)
    batch = (0.1 * rng.standard_normal((3, samples))).astype(np.float32)
    lengths = [samples - 8_000, samples - 24_000, samples // 2]  # no row spans the batch
    together = engine.forward(batch, lengths)
    assert together.shape[:2] == (3, spec.frames(samples))
    for row, length in enumerate(lengths):
        alone = engine.forward(batch[row : row + 1, :length], [length])
        np.testing.assert_array_equal(together[row, : alone.shape[1]], alone[0])
        assert not together[row, alone.shape[1] :].any()
