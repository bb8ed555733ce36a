#!/usr/bin/env bash
# Runs `python -m vaani.gpu_benchmark` on a bare CUDA machine that has python3 with torch and
# transformers but no nvidia-pytriton, no tritonclient and numpy 2 (this workplace's GPU machine).
# It needs, under $CARRY (default .gpubench/carry):
#   pytriton-site.tar.xz   site/{pytriton/tritonserver/{bin,backends/python,python_backend_stubs/3.12},
#                          nvidia_pytriton.libs,tritonclient} taken from the nvidia-pytriton 0.7.0 and
#                          tritonclient wheels (the full pytriton wheel is over the transfer limit)
#   numpy-1.26.4-cp312-*.whl         the python-backend stub of tritonserver 2.51 needs numpy<2
#   python_rapidjson-*-cp312-*.whl   tritonclient.grpc.aio imports it
# Results go to $OUT (or benchmarks/results); extra arguments go to the benchmark.
set -euo pipefail
CARRY=${CARRY:-.gpubench/carry}
OUT=${OUT:-benchmarks/results}
tar -xJf "$CARRY"/pytriton-site.tar.xz -C /tmp
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/numpy1 "$CARRY"/numpy-1.26.4-*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$CARRY"/python_rapidjson-*.whl
# vaani as installed: vaani.build, vaani.client, vaani.loadtest live in build/, client/, loadtest/.
rm -rf /tmp/site/vaani && cp -r vaani /tmp/site/vaani
for sub in build client loadtest; do cp -r "$sub" /tmp/site/vaani/"$sub"; done
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv
python3 -c "import sys, sysconfig, torch, numpy; print(sys.version.split()[0], sysconfig.get_config_var('LIBDIR'), torch.__version__, numpy.__version__, torch.cuda.get_device_name())"
python3 -m vaani.gpu_benchmark --out "$OUT" --server-pythonpath /tmp/numpy1 "$@"
