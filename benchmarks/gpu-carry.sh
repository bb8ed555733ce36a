#!/usr/bin/env bash
# Prepares, on a machine with PyPI access, everything a bare CUDA machine needs to run
# benchmarks/gpu-machine.sh and benchmarks/gpu-serve-check.sh (python3 with torch and transformers
# there; no package index, numpy 2, no tritonserver): the carry folder those scripts read.
#
#   benchmarks/gpu-carry.sh [--python PYTHON] [--perf-analyzer BINARY] [--cudart LIBRARY]
#                           [--libb64 LIBRARY] [--dry-run] [CARRY [MANIFEST]]
#   benchmarks/gpu-carry.sh --check-size [CARRY]
#   benchmarks/gpu-carry.sh --help
#
# CARRY (default: GPU_CARRY_DEFAULT of benchmarks/gpu-site.sh under the checkout, git-ignored) receives
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
#
# PYTHON (--python, else the PYTHON variable, else the checkout's .venv/bin/python) does everything
# that needs Python: pip downloads the wheels, zipfile unpacks them, vaani packs MANIFEST. Its
# environment also supplies, unless given, perf_analyzer (sys.prefix/libexec/perf_analyzer-2.51.0, where
# scripts/install-perf-analyzer.sh puts it) and libcudart.so.12 (nvidia-cuda-runtime-cu12).
#
# The device tool sends the checkout's working tree (tracked files and untracked ones that git does
# not ignore) and the carried folder, 64 MiB in all: the script checks the checkout before it
# downloads anything. The whole carry with the checkout is over that, so it ends by splitting CARRY
# into engine/, served/ and stream/ (hard links; gpu_carry_subsets of gpu-site.sh), checks checkout
# plus each, prints the command that carries each, and fails naming the biggest parts of one that is
# over. --check-size does that check alone on the folder given (for instance just before a run).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=benchmarks/gpu-site.sh
source "$REPO"/benchmarks/gpu-site.sh
WHEELS=(nvidia-pytriton==0.7.0 tritonclient==2.73.0 python-rapidjson==1.25 numpy==1.26.4)
AUDIO_WHEELS=(soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12)
PERF_VERSION=2.51.0

usage() {
  cat <<EOF
usage: benchmarks/gpu-carry.sh [--python PYTHON] [--perf-analyzer BINARY] [--cudart LIBRARY]
                               [--libb64 LIBRARY] [--dry-run] [CARRY [MANIFEST]]
       benchmarks/gpu-carry.sh --check-size [CARRY]

Builds CARRY, the folder that benchmarks/gpu-machine.sh and benchmarks/gpu-serve-check.sh read on a
bare CUDA machine: site.tar.xz (tritonserver parts of nvidia-pytriton, tritonclient, numpy 1 for the
stub), whl/ (soundfile, soxr, cffi, pycparser), perf.tar.xz (perf_analyzer with its libraries) and,
with MANIFEST, eval.npz (its first 48 utterances). Needs PyPI.

arguments:
  CARRY                   the carry folder (default: $REPO/$GPU_CARRY_DEFAULT)
  MANIFEST                a NeMo-style manifest with audio files, e.g. data/tiny-hindi-test/test.jsonl
                          (make testset); without it there is no eval.npz
options:
  --python PYTHON         the interpreter used for everything: pip, zipfile, vaani (with MANIFEST).
                          Default: \$PYTHON, else $REPO/.venv/bin/python
  --perf-analyzer BINARY  the perf_analyzer $PERF_VERSION binary (not the wrapper). Default: PYTHON's
                          sys.prefix/libexec/perf_analyzer-$PERF_VERSION (scripts/install-perf-analyzer.sh)
  --cudart LIBRARY        libcudart.so.12. Default: from PYTHON's nvidia-cuda-runtime-cu12
  --libb64 LIBRARY        libb64.so.0d. Default: Debian's libb64-0d (scripts/system-packages.sh)
  --dry-run               check and print the inputs and the checkout's size; download nothing
  --check-size            only check that the checkout's working tree and CARRY fit the device
                          tool's $(gpu_mib "$GPU_TRANSFER_LIMIT") (what it sends: tracked files, untracked
                          files that git does not ignore, the carried folder); needs no PYTHON
  -h, --help              this text

default carry: $REPO/$GPU_CARRY_DEFAULT
EOF
}
die() { echo "gpu-carry.sh: $*" >&2; exit 1; }
usage_error() { echo "gpu-carry.sh: $*" >&2; usage >&2; exit 2; }

PYTHON_ARG='' PERF='' CUDART='' LIBB64='' MODE=build
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --check-size) MODE=check-size ;;
    --dry-run) MODE=dry-run ;;
    --python|--perf-analyzer|--cudart|--libb64)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case $1 in
        --python) PYTHON_ARG=$2 ;; --perf-analyzer) PERF=$2 ;; --cudart) CUDART=$2 ;; --libb64) LIBB64=$2 ;;
      esac
      shift ;;
    --python=*) PYTHON_ARG=${1#*=} ;;
    --perf-analyzer=*) PERF=${1#*=} ;;
    --cudart=*) CUDART=${1#*=} ;;
    --libb64=*) LIBB64=${1#*=} ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) usage_error "unknown option $1" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ ${#ARGS[@]} -le 2 ] || usage_error "too many arguments: ${ARGS[*]}"
CARRY=${ARGS[0]:-$REPO/$GPU_CARRY_DEFAULT}
MANIFEST=${ARGS[1]:-}

if [ "$MODE" = check-size ]; then
  [ -z "$MANIFEST" ] || usage_error "--check-size takes CARRY only"
  gpu_transfer_check "$REPO" "$CARRY"
  exit
fi

# Inputs, all of them before the first download.
if [ -n "$PYTHON_ARG" ]; then
  PYTHON=$PYTHON_ARG
elif [ -z "${PYTHON:-}" ]; then
  PYTHON=$REPO/.venv/bin/python
  [ -x "$PYTHON" ] || die "no $PYTHON: pass --python PYTHON (or set PYTHON), or make setup for the checkout's .venv"
fi
PYTHON_PATH=$(command -v "$PYTHON") || die "PYTHON $PYTHON: no such interpreter"
PYTHON=$PYTHON_PATH
PREFIX=$("$PYTHON" -c 'import sys; print(sys.prefix)') || die "PYTHON $PYTHON does not run"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "PYTHON $PYTHON has no pip (it downloads the wheels)"
if [ -z "$PERF" ]; then
  PERF=$PREFIX/libexec/perf_analyzer-$PERF_VERSION
  [ -x "$PERF" ] || die "no $PERF in PYTHON's environment: scripts/install-perf-analyzer.sh $PREFIX installs it (make setup does, for .venv), or pass --perf-analyzer BINARY"
fi
[ -x "$PERF" ] || die "perf_analyzer $PERF: not an executable file"
if [ -z "$CUDART" ]; then
  CUDART=$("$PYTHON" -c 'import nvidia.cuda_runtime as m; print(list(m.__path__)[0])' 2>/dev/null)/lib/libcudart.so.12 ||
    die "PYTHON $PYTHON has no nvidia-cuda-runtime-cu12 (pip install nvidia-cuda-runtime-cu12, or the project's loadtest extra), or pass --cudart LIBRARY"
fi
[ -f "$CUDART" ] || die "libcudart.so.12 $CUDART: no such file"
if [ -z "$LIBB64" ]; then
  LIBB64=$(dpkg -L libb64-0d 2>/dev/null | grep 'libb64.so.0d$' | head -1) || true
  [ -n "$LIBB64" ] || die "no libb64.so.0d: apt-get install libb64-0d (scripts/system-packages.sh), or pass --libb64 LIBRARY"
fi
[ -f "$LIBB64" ] || die "libb64.so.0d $LIBB64: no such file"
command -v strip >/dev/null || die "no strip (binutils): it takes perf_analyzer's symbols out"
if [ -n "$MANIFEST" ]; then
  [ -f "$MANIFEST" ] || die "MANIFEST $MANIFEST: no such file (make testset makes data/tiny-hindi-test/test.jsonl)"
  "$PYTHON" -c 'import vaani.benchmarks.gpu_benchmark' 2>/dev/null ||
    die "PYTHON $PYTHON cannot import vaani.benchmarks.gpu_benchmark, which packs MANIFEST: use an environment with the project installed"
fi
case $(realpath -m "$CARRY")/ in
  "$REPO"/*)
    if ! git -C "$REPO" check-ignore -q "$CARRY"; then
      echo "note: CARRY $CARRY is not git-ignored: it travels as part of the working tree" >&2
    fi ;;
  *) echo "note: CARRY $CARRY is outside the checkout: the device tool carries only paths inside it" >&2 ;;
esac
if [ "$MODE" = dry-run ]; then
  printf '%-14s %s\n' python "$PYTHON" perf_analyzer "$PERF" libcudart "$CUDART" libb64 "$LIBB64" \
    carry "$CARRY" manifest "${MANIFEST:-(none: no eval.npz)}"
fi
# The carry is rebuilt below; the checkout alone must leave room for it.
gpu_transfer_check "$REPO" || exit
[ "$MODE" = build ] || exit 0

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
# vaani.supervision finds the server through `pytriton.__file__`: a marker package, not pytriton's own
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

mkdir -p "$WORK/perf/bin" "$WORK/perf/lib"
cp "$PERF" "$WORK/perf/lib/perf_analyzer" && strip "$WORK/perf/lib/perf_analyzer"  # symbols: 5 MB
cp "$LIBB64" "$WORK/perf/lib/libb64.so.0d"
cp "$CUDART" "$WORK/perf/lib/libcudart.so.12"
cat > "$WORK/perf/bin/perf_analyzer" <<'WRAPPER'
#!/usr/bin/env bash
lib=$(cd "$(dirname "$0")/../lib" && pwd)
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$lib/perf_analyzer" "$@"
WRAPPER
chmod +x "$WORK/perf/bin/perf_analyzer"
tar -C "$WORK" -cJf "$CARRY/perf.tar.xz" perf
if [ -n "$MANIFEST" ]; then
  # 48 utterances (1.9 min): with site.tar.xz and the checkout (engine/ below), within the device tool's 64 MiB
  "$PYTHON" -m vaani.benchmarks.gpu_benchmark --prepare-eval "$MANIFEST" --eval-file "$CARRY/eval.npz" --eval-limit 48
fi
ls -l "$CARRY"
# The whole folder with the checkout is over the limit: each run carries the subset it needs.
FITS=0
while read -r subset lacks; do
  rel=$(realpath --relative-to="$REPO" "$subset")
  gpu_transfer_check "$REPO" "$subset" >/dev/null || { gpu_transfer_check "$REPO" "$subset"; FITS=1; continue; }
  case ${subset##*/} in
    engine) run="CARRY=$rel OUT=\$OUT/engine bash benchmarks/gpu-machine.sh --skip-server" ;;
    served) run="CARRY=$rel OUT=\$OUT/served bash benchmarks/gpu-machine.sh --skip-engine" ;;
    stream) run="CARRY=$rel OUT=\$OUT/stream bash benchmarks/gpu-streaming.sh" ;;
  esac
  echo "carry $rel ${lacks:+$lacks }and run there  $run"
done < <(gpu_carry_subsets "$CARRY")
exit "$FITS"
