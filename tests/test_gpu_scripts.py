"""The GPU recipe's shell scripts: arguments, the shared carry folder and the 64 MiB transfer check.

They run for real, without network or GPU: `--help`, `--check-size` and `--dry-run` stop before any
download, and the checkouts they check are temporary git repositories holding copies of the
scripts, with sparse files large enough to go over the device tool's limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("gpu-carry.sh", "gpu-site.sh", "gpu-machine.sh", "gpu-serve-check.sh")
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash and git"
)


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None):
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CARRY", "GPU_TRANSFER_LIMIT")}
    environment.update(env or {})
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk space: the transfer counts what a copy sends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    return path


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def checkout(root: Path, gitignore: str) -> Path:
    """A git checkout with the GPU scripts tracked (and no .venv), ignoring what `gitignore` says."""
    repo = root / "checkout"
    (repo / "benchmarks").mkdir(parents=True)
    for name in SCRIPTS:
        shutil.copy2(ROOT / "benchmarks" / name, repo / "benchmarks" / name)
    (repo / ".gitignore").write_text(gitignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


def default_carry() -> str:
    source = f"source {ROOT / 'benchmarks' / 'gpu-site.sh'}; echo $GPU_CARRY_DEFAULT"
    return run("bash", "-c", source).stdout.strip()


# ---- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_carry_help_documents_usage(flag):
    result = run("bash", "benchmarks/gpu-carry.sh", flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: benchmarks/gpu-carry.sh [--python PYTHON]")
    for words in ("CARRY", "MANIFEST", "--python PYTHON", "--check-size", "--dry-run", "64 MiB"):
        assert words in result.stdout


def test_carry_refuses_unknown_options_and_extra_arguments():
    unknown = run("bash", "benchmarks/gpu-carry.sh", "--bogus")
    assert unknown.returncode == 2
    assert "unknown option --bogus" in unknown.stderr
    assert "usage:" in unknown.stderr
    extra = run("bash", "benchmarks/gpu-carry.sh", "--check-size", "a", "b", "c")
    assert extra.returncode == 2
    assert "too many arguments" in extra.stderr
    missing = run("bash", "benchmarks/gpu-carry.sh", "--python")
    assert missing.returncode == 2
    assert "--python needs a value" in missing.stderr


def test_serve_check_help_and_usage():
    result = run("bash", "benchmarks/gpu-serve-check.sh", "--help")
    assert result.returncode == 0, result.stderr
    assert "CARRY" in result.stdout
    wrong = run("bash", "benchmarks/gpu-serve-check.sh", "extra")
    assert wrong.returncode == 2
    assert "usage:" in wrong.stderr


def test_scripts_share_one_default_carry(tmp_path):
    """gpu-carry.sh fills the folder that gpu-machine.sh and gpu-serve-check.sh read when CARRY is unset."""
    default = default_carry()
    assert default
    expected = str((ROOT / default).resolve())
    result = run("bash", "benchmarks/gpu-carry.sh", "--help")
    assert re.findall(r"^default carry: (.+)$", result.stdout, re.M) == [expected]
    for script in ("gpu-serve-check.sh", "gpu-machine.sh"):
        result = run("bash", f"benchmarks/{script}", "--help")
        assert result.returncode == 0, (script, result.stderr)
        assert re.findall(r"^carry: (.+)$", result.stdout, re.M) == [expected], script
        # CARRY still chooses another one; without a carry folder they stop before installing anything.
        elsewhere = run("bash", f"benchmarks/{script}", "--help", env={"CARRY": str(tmp_path)})
        assert re.findall(r"^carry: (.+)$", elsewhere.stdout, re.M) == [str(tmp_path)], script
        missing = run("bash", f"benchmarks/{script}", env={"CARRY": str(tmp_path / "none")})
        assert missing.returncode == 1, script
        assert f"no carry folder {tmp_path / 'none'}" in missing.stderr, script
    # Ignored, so that it travels only as a carried path and never twice.
    assert run("git", "check-ignore", "-q", f"{default}/site.tar.xz").returncode == 0


def test_project_ignores_data():
    assert run("git", "check-ignore", "-q", "data/tiny-hindi-test/test.jsonl").returncode == 0


# ---- the 64 MiB transfer check -----------------------------------------------------------------


def test_unignored_data_folder_fails_the_size_check(tmp_path):
    repo = checkout(tmp_path, "/.gpubench/\n")
    sparse(repo / "data" / "tiny-hindi-test" / "audio.bin", 70 * MIB)
    result = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size")
    assert result.returncode == 1
    assert "over the device tool's 64 MiB" in result.stderr
    assert re.search(r"70 MiB  data/  \(untracked, not git-ignored\)", result.stderr)
    assert f"echo '/data/' >> {repo.resolve()}/.gitignore" in result.stderr

    with (repo / ".gitignore").open("a") as f:
        f.write("/data/\n")
    fixed = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size")
    assert fixed.returncode == 0, fixed.stderr
    assert "gpu transfer:" in fixed.stdout
    assert "of 64 MiB" in fixed.stdout


def test_carry_counts_towards_the_limit(tmp_path):
    repo = checkout(tmp_path, "/.gpubench/\n")
    sparse(repo / "models" / "model.bin", 30 * MIB)
    git(repo, "add", "models/model.bin")
    carry = repo / default_carry()
    sparse(carry / "whl" / "a.whl", 20 * MIB)

    fits = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size")
    assert fits.returncode == 0, fits.stderr
    assert "carry .gpubench/c2 20 MiB" in fits.stdout

    sparse(carry / "site.tar.xz", 20 * MIB)
    over = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size")
    assert over.returncode == 1
    assert "70.0 MiB is over the device tool's 64 MiB" in over.stderr
    assert re.search(r"40 MiB  \.gpubench/c2  \(carried\)", over.stderr)
    assert re.search(r"30 MiB  models/  \(tracked\)", over.stderr)
    # A carry given as an argument is the one checked.
    other = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size", repo / ".gpubench" / "none")
    assert other.returncode == 0, other.stderr


def test_the_carry_splits_into_one_folder_per_run_each_within_the_limit(tmp_path):
    """Checkout 20 MiB, site.tar.xz 33 MiB: eval.npz (3) and the recordings (2) fit beside them, perf.tar.xz
    (12) does not and is left out, said so; every file is a hard link to the carry's (no second copy)."""
    repo = checkout(tmp_path, "/.gpubench/\n")
    sparse(repo / "models" / "model.bin", 20 * MIB)
    git(repo, "add", "models/model.bin")
    carry = repo / default_carry()
    for name, mib in (("site.tar.xz", 33), ("eval.npz", 3), ("perf.tar.xz", 12), ("whl/a.whl", 1)):
        sparse(carry / name, mib * MIB)
    sparse(repo / ".gpubench" / "stream" / "recordings.npz", 2 * MIB)
    done = run("bash", "-c", f"source benchmarks/gpu-site.sh && gpu_carry_subsets {carry}", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{carry}/engine",
        f"{carry}/served (perf.tar.xz left out: over the limit beside the checkout)",
        f"{carry}/stream",
    ]
    held = {name: sorted(p.relative_to(carry / name).as_posix() for p in (carry / name).rglob("*.*"))
            for name in ("engine", "served", "stream")}  # fmt: skip
    assert held == {
        "engine": ["eval.npz", "site.tar.xz", "whl/a.whl"],
        "served": ["site.tar.xz", "whl/a.whl"],
        "stream": ["recordings.npz", "site.tar.xz", "whl/a.whl"],
    }
    assert (carry / "engine" / "site.tar.xz").stat().st_ino == (carry / "site.tar.xz").stat().st_ino
    for name in held:
        check = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size", carry / name)
        assert check.returncode == 0, check.stderr


def test_carry_inside_the_working_tree_counts_once(tmp_path):
    repo = checkout(tmp_path, "")
    sparse(repo / "carry" / "site.tar.xz", 40 * MIB)
    result = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size", repo / "carry")
    assert result.returncode == 0, result.stderr


def test_deleted_tracked_files_do_not_travel(tmp_path):
    repo = checkout(tmp_path, "")
    big = sparse(repo / "old.bin", 70 * MIB)
    git(repo, "add", "old.bin")
    assert run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size").returncode == 1
    big.unlink()
    assert run("bash", repo / "benchmarks" / "gpu-carry.sh", "--check-size").returncode == 0


def test_size_check_needs_a_git_checkout(tmp_path):
    source = f"source {ROOT / 'benchmarks' / 'gpu-site.sh'}; gpu_transfer_check {tmp_path}"
    result = run("bash", "-c", source, cwd=tmp_path)
    assert result.returncode == 2
    assert "not a git checkout" in result.stderr


# ---- PYTHON and the inputs ---------------------------------------------------------------------


@pytest.fixture
def environment(tmp_path) -> dict[str, Path]:
    """A virtual environment with stand-ins for what gpu-carry.sh takes from PYTHON's environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "pip").mkdir(parents=True)
    (purelib / "pip" / "__init__.py").write_text("")
    (purelib / "pip" / "__main__.py").write_text("print('pip (stand-in)')\n")
    cudart = sparse(purelib / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12", 1)
    perf = sparse(venv / "libexec" / "perf_analyzer-2.51.0", 1)
    perf.chmod(0o755)
    libb64 = sparse(tmp_path / "libb64.so.0d", 1)
    return {"python": python, "cudart": cudart, "perf": perf, "libb64": libb64}


def dry_run_inputs(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines() if not line.startswith("gpu transfer"))


@pytest.mark.skipif(shutil.which("strip") is None, reason="gpu-carry.sh needs strip (binutils)")
@pytest.mark.parametrize("how", ["argument", "variable"])
def test_python_given_supplies_everything(tmp_path, environment, how):
    """No .venv in the checkout: PYTHON's environment is where perf_analyzer and libcudart come from."""
    repo = checkout(tmp_path, "/.gpubench/\n")
    script = repo / "benchmarks" / "gpu-carry.sh"
    libb64 = ("--libb64", environment["libb64"])
    if how == "argument":
        result = run("bash", script, "--dry-run", "--python", environment["python"], *libb64)
    else:
        result = run("bash", script, "--dry-run", *libb64, env={"PYTHON": str(environment["python"])})
    assert result.returncode == 0, result.stderr
    inputs = dry_run_inputs(result.stdout)
    assert inputs["python"] == str(environment["python"])
    assert inputs["perf_analyzer"] == str(environment["perf"])
    assert Path(inputs["libcudart"]).resolve() == environment["cudart"].resolve()
    assert inputs["carry"] == f"{repo.resolve()}/{default_carry()}"
    assert ".venv" not in result.stdout + result.stderr
    assert not (repo / default_carry()).exists()


def test_without_python_and_venv_it_says_what_to_pass(tmp_path):
    repo = checkout(tmp_path, "/.gpubench/\n")
    result = run("bash", repo / "benchmarks" / "gpu-carry.sh", "--dry-run")
    assert result.returncode == 1
    assert "pass --python PYTHON" in result.stderr


def test_missing_perf_analyzer_named_in_pythons_environment(tmp_path, environment):
    environment["perf"].unlink()
    repo = checkout(tmp_path, "/.gpubench/\n")
    result = run(
        "bash",
        repo / "benchmarks" / "gpu-carry.sh",
        "--dry-run",
        "--python",
        environment["python"],
        "--libb64",
        environment["libb64"],
    )
    assert result.returncode == 1
    assert f"no {environment['perf']} in PYTHON's environment" in result.stderr
    assert "--perf-analyzer BINARY" in result.stderr


@pytest.mark.skipif(shutil.which("strip") is None, reason="gpu-carry.sh needs strip (binutils)")
def test_oversized_checkout_fails_before_any_download(tmp_path, environment):
    """The stand-in pip downloads nothing: a build that got past the check would fail unpacking."""
    repo = checkout(tmp_path, "/.gpubench/\n")
    sparse(repo / "data" / "clips.bin", 65 * MIB)
    result = run(
        "bash",
        repo / "benchmarks" / "gpu-carry.sh",
        "--python",
        environment["python"],
        "--libb64",
        environment["libb64"],
    )
    assert result.returncode == 1
    assert "over the device tool's 64 MiB" in result.stderr
    assert "data/  (untracked, not git-ignored)" in result.stderr
    assert not (repo / default_carry()).exists()


def test_served_settings_sweep_takes_typed_repository_fields_and_refuses_unknown_ones():
    """`gpu_benchmark --served-settings`: the served suite with `RepositorySettings` fields changed."""
    import argparse

    from vaani.benchmarks.gpu_benchmark import _settings_changes

    changes = _settings_changes("turn_audio_seconds=0,queue_delay_us=100,quantize=false")
    assert changes == {"turn_audio_seconds": 0.0, "queue_delay_us": 100, "quantize": False}
    assert isinstance(changes["queue_delay_us"], int)
    with pytest.raises(argparse.ArgumentTypeError, match="no RepositorySettings field 'nonsense'"):
        _settings_changes("nonsense=1")
