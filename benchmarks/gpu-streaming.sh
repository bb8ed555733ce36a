#!/usr/bin/env bash
# Live recognition at scale on a bare CUDA machine: real-time streams to `asr_stream` served with the
# torch engine, the large shape by default (`python -m vaani.benchmarks.gpu_streaming`: random
# wav2vec2-large weights with the Hindi processor, built by `vaani build`, served by tritonserver; the
# table of streams held against per-chunk latency). Run from the checkout's root.
#
#   [CARRY=DIR] [RECORDINGS=FILE] [OUT=DIR] [COMMIT=TEXT] bash benchmarks/gpu-streaming.sh [ARGUMENTS]
#   bash benchmarks/gpu-streaming.sh --local [ARGUMENTS]    # the CPU check: this checkout's .venv
#   bash benchmarks/gpu-streaming.sh --check-size           # does checkout + carry fit the device tool?
#
# On the GPU machine (python3 with torch and transformers, no package index, numpy 2, no tritonserver)
# it needs, from what benchmarks/gpu-carry.sh makes where PyPI is reachable (CARRY, default
# GPU_CARRY_DEFAULT of benchmarks/gpu-site.sh), only site.tar.xz (tritonserver, tritonclient, numpy 1
# for the python-backend stub) and whl/ (soundfile, soxr, cffi, pycparser); and RECORDINGS (default
# $CARRY/recordings.npz where it exists, else .gpubench/stream/recordings.npz): the streams' audio,
# recordings of held-out sentences with pauses, which the GPU machine cannot make (no espeak-ng).
# Make it here once, before benchmarks/gpu-carry.sh:
#   .venv/bin/python -m vaani.benchmarks.gpu_streaming --make-recordings --recordings .gpubench/stream/recordings.npz
# The whole carry folder with the checkout is over the device tool's 64 MiB, so gpu-carry.sh ends by
# making $CARRY/stream/: hard links to these three (gpu_carry_subsets of gpu-site.sh). Carry it and run
# with CARRY=.gpubench/c2/stream. --check-size checks what would travel.
#
# ARGUMENTS go to `python -m vaani.benchmarks.gpu_streaming` (its --help lists them): --shape
# large|tiny|bundled, --streams 1,250,500,1000, --partial-seconds, --stream-instances, ... (--out,
# --recordings and the stub's numpy path are set here). Results under $OUT (default
# benchmarks/results/gpu-streaming): streaming/table.md and results.json, settings.json, the server
# log's tail. --local runs the same on this machine with .venv/bin/python and no install; a CPU cannot
# serve the torch engine, so check there with --engine onnxruntime --shape tiny.
set -euo pipefail
REPO=$PWD
# shellcheck source=benchmarks/gpu-site.sh
source "$(dirname "$0")"/gpu-site.sh
CARRY=$(realpath -m "${CARRY:-$GPU_CARRY_DEFAULT}")
if [ -z "${RECORDINGS:-}" ]; then
  RECORDINGS=.gpubench/stream/recordings.npz
  [ -f "$CARRY"/recordings.npz ] && RECORDINGS=$CARRY/recordings.npz
fi
RECORDINGS=$(realpath -m "$RECORDINGS")
usage() { sed -n '2,/^set -/{/^set -/d;s/^# \{0,1\}//;p}' "$0"; }
case ${1:-} in
  -h|--help)
    usage
    echo "carry: $CARRY/site.tar.xz $CARRY/whl $RECORDINGS"
    exit 0 ;;
  --check-size)
    gpu_transfer_check "$REPO" "$CARRY"/site.tar.xz "$CARRY"/whl "$RECORDINGS"
    exit ;;
esac
[ -f "$RECORDINGS" ] || { echo "no $RECORDINGS: make it as --help says, or set RECORDINGS" >&2; exit 1; }
OUT=$(realpath -m "${OUT:-benchmarks/results/gpu-streaming}")
mkdir -p "$OUT"
if [ -z "${COMMIT:-}" ] && COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); then
  [ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ] || COMMIT+=" + working tree"
fi
export VAANI_COMMIT=${COMMIT:-not recorded} PYTHONUNBUFFERED=1
if [ "${1:-}" = --local ]; then
  shift
  exec "$REPO"/.venv/bin/python -m vaani.benchmarks.gpu_streaming --out "$OUT" --recordings "$RECORDINGS" "$@"
fi
[ -f "$CARRY"/site.tar.xz ] || { echo "no $CARRY/site.tar.xz: benchmarks/gpu-carry.sh makes it, or set CARRY" >&2; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/whl "$CARRY"/whl/*.whl
gpu_site_install
export PYTHONPATH=/tmp/site:/tmp/whl
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) CPU cores; $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
# Run from outside the checkout: its vaani/ (without vaani.build) must not shadow /tmp/site/vaani.
cd /tmp
python3 -m vaani.benchmarks.gpu_streaming --out "$OUT" --recordings "$RECORDINGS" --server-pythonpath /tmp/numpy1 \
  --bundled-model "$REPO"/models/tiny-hindi "$@"
