#!/usr/bin/env bash
# Runs `python -m vaani.benchmarks.gpu_benchmark` on a bare CUDA machine that has python3 with torch and
# transformers but no nvidia-pytriton, no tritonclient and numpy 2 (this workplace's GPU machine).
# Run from the checkout's root. It needs, under $CARRY (default: GPU_CARRY_DEFAULT of benchmarks/gpu-site.sh,
# the folder benchmarks/gpu-carry.sh fills), what benchmarks/gpu-carry.sh prepares where PyPI is reachable:
#   site.tar.xz   site/{pytriton/tritonserver/{bin,backends/python,python_backend_stubs/3.12},
#                 nvidia_pytriton.libs,tritonclient,rapidjson} taken from the nvidia-pytriton 0.7.0,
#                 tritonclient and python-rapidjson (cp312) wheels (the whole pytriton wheel is over
#                 the transfer limit), and numpy1/ = numpy 1.26.4 for cp312 without its tests: the
#                 python-backend stub of tritonserver 2.51 needs numpy<2
#   whl/          soundfile, soxr, cffi, pycparser wheels (cp312), installed under /tmp/whl
#   perf.tar.xz   optional: perf_analyzer and its libraries (the served suite's per-step breakdown)
#   eval.npz      optional: the bundled test set (`python -m vaani.benchmarks.gpu_benchmark --prepare-eval`)
# Results go to $OUT (or benchmarks/results); extra arguments go to the benchmark (-h/--help alone: this text).
# The regression guard: at the end the benchmark compares each workload with the newest older run recorded
# under benchmarks/results (same GPU; engine and served separately) and prints the ratio per workload and a
# line starting "REGRESSION:" for each one more than 5 % slower (`python -m vaani.benchmarks.gpu_report
# RESULTS.json --check benchmarks/results` repeats it on recorded JSON). The commit measured is recorded
# with the results: git's HEAD (+ " + working tree" when it differs), or $COMMIT where the tree was copied
# without its .git.
#
#   [CARRY=DIR] [OUT=DIR] [COMMIT=TEXT] bash benchmarks/gpu-machine.sh [BENCHMARK ARGUMENTS]
set -euo pipefail
REPO=$PWD
# shellcheck source=benchmarks/gpu-site.sh
source "$(dirname "$0")"/gpu-site.sh
CARRY=$(realpath -m "${CARRY:-$GPU_CARRY_DEFAULT}")
if [ $# -eq 1 ] && { [ "$1" = -h ] || [ "$1" = --help ]; }; then
  sed -n '2,/^set -/{/^set -/d;s/^# \{0,1\}//;p}' "$0"
  echo "benchmark arguments: python -m vaani.benchmarks.gpu_benchmark --help"
  echo "carry: $CARRY"
  exit 0
fi
[ -d "$CARRY" ] || { echo "no carry folder $CARRY: benchmarks/gpu-carry.sh makes it, or set CARRY" >&2; exit 1; }
OUT=${OUT:-benchmarks/results}
if [ -z "${COMMIT:-}" ] && COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); then
  [ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ] || COMMIT+=" + working tree"
fi
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/whl "$CARRY"/whl/*.whl
gpu_site_install
export PYTHONPATH=/tmp/site:/tmp/whl PYTHONUNBUFFERED=1
if [ -f "$CARRY"/perf.tar.xz ]; then  # perf_analyzer for the served suite's per-step breakdown
  tar -xJf "$CARRY"/perf.tar.xz -C /tmp && export PATH=/tmp/perf/bin:$PATH
  perf_analyzer --version 2>&1 | head -2 || echo "perf_analyzer does not run here"
fi
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv
python3 -c "import sys, sysconfig, torch, numpy; print(sys.version.split()[0], sysconfig.get_config_var('LIBDIR'), torch.__version__, numpy.__version__, torch.cuda.get_device_name())"
# What the python-backend stub will import, with the stub's numpy first (fails fast and says why).
(cd /tmp && PYTHONPATH=/tmp/numpy1:/tmp/site:/tmp/site/pytriton/tritonserver/backends/python python3 -c "
import numpy, torch, transformers, triton_python_backend_utils
from vaani.serving.engines.torch_engine import TorchEngine
from vaani.serving.preprocessing import normalize
print('stub imports ok: numpy', numpy.__version__)") || echo "stub imports FAILED"
ldd /tmp/site/pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub | grep -i "python\|not found" || true
# Run from outside the checkout: its vaani/ (without vaani.build) must not shadow /tmp/site/vaani.
OUT=$(realpath "$OUT") && cd /tmp && EVAL=()
if [ -f "$CARRY"/eval.npz ]; then EVAL=(--eval-file "$CARRY"/eval.npz --eval-model "$REPO"/models/tiny-hindi); fi
python3 -m vaani.benchmarks.gpu_benchmark --out "$OUT" --server-pythonpath /tmp/numpy1 "${EVAL[@]}" \
  --commit "${COMMIT:-not recorded}" --baseline-dir "$REPO"/benchmarks/results "$@"
