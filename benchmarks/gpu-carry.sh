#!/usr/bin/env bash
# Prepares, on a machine with PyPI access, everything a bare CUDA machine needs to run
# benchmarks/gpu-machine.sh (python3 with torch and transformers there; no package index,
# numpy 2, no tritonserver): the carry folder that script reads.
#
#   benchmarks/gpu-carry.sh [CARRY] [MANIFEST]
#
# CARRY (default .gpubench/c2, git-ignored) receives
#   site.tar.xz  site/{pytriton/tritonserver/{bin,backends/python,python_backend_stubs/3.12},
#                nvidia_pytriton.libs,tritonclient,rapidjson} and numpy1/ (numpy<2 for the stub),
#                from the cp312 x86-64 wheels below; only these parts, so that the carry stays
#                under the device tool's 64 MiB
#   whl/         soundfile, soxr, cffi, pycparser (cp312): `vaani.audio`'s needs, which the build of
#                the served repository imports
#   perf.tar.xz  perf/: the perf_analyzer 2.51.0 binary `make setup` installs, with the libraries it
#                needs beyond glibc, OpenSSL and zlib (Debian's libb64, PyPI's libcudart.so.12) and a
#                wrapper that finds them: the served suite's per-step breakdown
#   eval.npz     only with MANIFEST (a NeMo-style manifest with audio files, e.g. `make testset`'s
#                data/tiny-hindi-test/test.jsonl): its first 48 utterances, for the accuracy checks
# The wheels are pinned: these versions are the ones the recorded runs used.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CARRY=${1:-$REPO/.gpubench/c2}
MANIFEST=${2:-}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WHEELS=(nvidia-pytriton==0.7.0 tritonclient==2.73.0 python-rapidjson==1.25 numpy==1.26.4)
AUDIO_WHEELS=(soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

download() {
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$@"
}
download "$WORK/whl" "${WHEELS[@]}"
rm -rf "$CARRY/whl" && mkdir -p "$CARRY/whl" && download "$CARRY/whl" "${AUDIO_WHEELS[@]}"

unpack() { "$PYTHON" -m zipfile -e "$(ls "$WORK"/whl/"$1"-*.whl)" "$WORK/$1"; }
for name in nvidia_pytriton tritonclient python_rapidjson numpy; do unpack "$name"; done

SITE=$WORK/out/site
mkdir -p "$SITE/pytriton/tritonserver/backends" "$SITE/pytriton/tritonserver/python_backend_stubs"
SERVER=$WORK/nvidia_pytriton/pytriton/tritonserver
# vaani.server finds the server through `pytriton.__file__`: a marker package, not pytriton's own
# __init__ (it imports the rest of the wheel, which does not travel).
echo '"""The tritonserver parts of nvidia-pytriton 0.7.0 (benchmarks/gpu-carry.sh)."""' > "$SITE/pytriton/__init__.py"
cp -r "$SERVER/bin" "$SITE/pytriton/tritonserver/"
cp -r "$SERVER/backends/python" "$SITE/pytriton/tritonserver/backends/"
cp -r "$SERVER/python_backend_stubs/3.12" "$SITE/pytriton/tritonserver/python_backend_stubs/"
cp -r "$WORK/nvidia_pytriton/nvidia_pytriton.libs" "$SITE/"
rm "$SITE"/nvidia_pytriton.libs/libpython3-*  # the 3.13 stub's Python (32 MB); the 3.12 stub uses the system's
cp -r "$WORK/tritonclient/tritonclient" "$SITE/"
cp -r "$WORK"/python_rapidjson/rapidjson* "$SITE/"
# The stub's numpy: the package alone, without its tests (size).
mkdir -p "$WORK/out/numpy1"
cp -r "$WORK/numpy/numpy" "$WORK/numpy/numpy.libs" "$WORK/out/numpy1/"
find "$WORK/out/numpy1" -type d -name tests -prune -exec rm -rf {} +
chmod -R u+rwX,go+rX "$WORK/out"
chmod +x "$SITE"/pytriton/tritonserver/bin/* "$SITE"/pytriton/tritonserver/python_backend_stubs/3.12/*

mkdir -p "$CARRY"
export XZ_OPT=-9  # the carry and the checkout share the device tool's 64 MiB
tar -C "$WORK/out" -cJf "$CARRY/site.tar.xz" site numpy1

PERF=$REPO/.venv/libexec/perf_analyzer-2.51.0
[ -x "$PERF" ] || { echo "no $PERF: run make setup first" >&2; exit 1; }
mkdir -p "$WORK/perf/bin" "$WORK/perf/lib"
cp "$PERF" "$WORK/perf/lib/perf_analyzer" && strip "$WORK/perf/lib/perf_analyzer"  # symbols: 5 MB
cp "$(dpkg -L libb64-0d | grep 'libb64.so.0d$' | head -1)" "$WORK/perf/lib/"
cp "$(find "$REPO/.venv" -name libcudart.so.12 | head -1)" "$WORK/perf/lib/"
cat > "$WORK/perf/bin/perf_analyzer" <<'WRAPPER'
#!/usr/bin/env bash
lib=$(cd "$(dirname "$0")/../lib" && pwd)
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$lib/perf_analyzer" "$@"
WRAPPER
chmod +x "$WORK/perf/bin/perf_analyzer"
tar -C "$WORK" -cJf "$CARRY/perf.tar.xz" perf
if [ -n "$MANIFEST" ]; then
  # 48 utterances (1.9 min): with site.tar.xz, perf.tar.xz and the checkout, within the device tool's 64 MiB
  "$PYTHON" -m vaani.benchmarks.gpu_benchmark --prepare-eval "$MANIFEST" --eval-file "$CARRY/eval.npz" --eval-limit 48
fi
ls -l "$CARRY"
echo "carry ready: run on the GPU machine  CARRY=$CARRY OUT=\$OUT bash benchmarks/gpu-machine.sh"
