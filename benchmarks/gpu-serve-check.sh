#!/usr/bin/env bash
# `vaani build --engine torch` and `vaani serve --engine torch` on a bare CUDA machine (this
# workplace's GPU machine: no package index, numpy 2, no nvidia-pytriton), then
# benchmarks/gpu_serve_check.py against the running server. Run from the checkout's root. Needs, under
# $CARRY (default: GPU_CARRY_DEFAULT of benchmarks/gpu-site.sh, the folder benchmarks/gpu-carry.sh fills):
#   site.tar.xz  as for gpu-machine.sh (tritonserver parts of nvidia-pytriton, tritonclient, numpy1/)
#   whl/         soundfile, soxr, cffi, pycparser wheels for cp312
#   eval.npz     bundled test-set clips (`python -m vaani.benchmarks.gpu_benchmark --prepare-eval`)
# The build runs without the stub hook (transformers there needs numpy 2); only the server gets it.
# Logs and the check's report go to $OUT (default /tmp).
#
#   [CARRY=DIR] [OUT=DIR] bash benchmarks/gpu-serve-check.sh
set -uo pipefail
REPO=$PWD
# shellcheck source=benchmarks/gpu-site.sh
source "$(dirname "$0")"/gpu-site.sh
CARRY=$(realpath -m "${CARRY:-$GPU_CARRY_DEFAULT}")
case ${1-} in
  -h|--help)
    sed -n '2,/^set -/{/^set -/d;s/^# \{0,1\}//;p}' "$0"
    echo "carry: $CARRY"
    exit 0 ;;
  "") ;;
  *) echo "usage: [CARRY=DIR] [OUT=DIR] bash benchmarks/gpu-serve-check.sh  (-h: help)" >&2; exit 2 ;;
esac
[ -d "$CARRY" ] || { echo "no carry folder $CARRY: benchmarks/gpu-carry.sh makes it, or set CARRY" >&2; exit 1; }
OUT=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/whl "$CARRY"/whl/*.whl
gpu_site_install
export PYTHONPATH=/tmp/site:/tmp/whl PYTHONUNBUFFERED=1
# Greedy: the GPU machine has no pyctcdecode for the bundled model's LM (CI checks the beam path).
cd /tmp && python3 -m vaani.cli build --engine torch --model "$REPO"/models/tiny-hindi --repository /tmp/repo \
  --acoustic-instances 2 --decoder greedy 2>&1 | tail -5 | tee "$OUT"/build.log
SITES=$(python3 -c "import site;print(':'.join(site.getsitepackages()))")
export VAANI_STUB_PATH="/tmp/numpy1:/tmp/site:/tmp/whl:$SITES"
export VAANI_STUB_NUMPY1=/tmp/numpy1 VAANI_STUB_NUMPY2_FOR=wav2vec2
python3 -m vaani.cli serve --skip-build --engine torch --model "$REPO"/models/tiny-hindi --repository /tmp/repo \
  --acoustic-instances 2 --decoder greedy --gateway-port 0 > "$OUT"/serve.log 2>&1 &
SERVER=$!
python3 - <<'PY'
import time, urllib.request
for _ in range(240):
    try:
        urllib.request.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2); print("ready"); break
    except Exception:
        time.sleep(1)
PY
env -u VAANI_STUB_PATH -u VAANI_STUB_NUMPY1 python3 "$REPO"/benchmarks/gpu_serve_check.py "$REPO" "$CARRY"/eval.npz \
  2>&1 | tee "$OUT"/check.txt
kill -TERM $SERVER; wait $SERVER; echo "vaani serve exit $?"
