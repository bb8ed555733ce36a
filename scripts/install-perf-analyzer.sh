#!/usr/bin/env bash
# Install NVIDIA's perf_analyzer into a virtual environment: `.venv/bin/perf_analyzer`.
#
# Why this way: perf_analyzer ships inside the tritonclient
# wheels only up to 2.60.0, the 2.52+ binaries need glibc 2.38 (Debian 12 has 2.36), and installing
# `tritonclient[all]==2.51.0` would pin geventhttpclient 2.0.2 and drag Locust back to 2.18. So the
# binary is taken out of the 2.51.0 wheel (a zip) while the environment keeps the newest client
# library. It needs libb64 (Debian `libb64-0d`, from scripts/system-packages.sh) and libcudart.so.12
# (PyPI `nvidia-cuda-runtime-cu12`, a dependency of the `loadtest` extra); the wrapper written to
# bin/ puts the latter on LD_LIBRARY_PATH, so `perf_analyzer` runs like any other venv command.
#
# Usage: scripts/install-perf-analyzer.sh [VENV]   (default: .venv; does nothing when up to date)
set -euo pipefail
venv="${1:-.venv}"
version="2.51.0"
python="$venv/bin/python"
binary="$venv/libexec/perf_analyzer-$version"
wrapper="$venv/bin/perf_analyzer"

[ -x "$python" ] || { echo "no virtual environment at $venv (run make setup)" >&2; exit 1; }

if [ ! -x "$binary" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "fetching perf_analyzer from the tritonclient==$version wheel"
    "$python" -m pip download -q "tritonclient==$version" --no-deps --only-binary=:all: \
        --platform manylinux1_x86_64 --python-version 3 -d "$work"
    "$python" -m zipfile -e "$work"/tritonclient-"$version"-*.whl "$work/wheel"
    mkdir -p "$(dirname "$binary")"
    install -m 0755 "$work/wheel/tritonclient-$version.data/data/bin/perf_analyzer" "$binary"
fi

cudart="$("$python" -c 'import nvidia.cuda_runtime as m; print(list(m.__path__)[0])' 2>/dev/null)/lib" || {
    echo "nvidia-cuda-runtime-cu12 is missing from $venv: pip install -e '.[loadtest]'" >&2
    exit 1
}
cat >"$wrapper" <<EOF
#!/usr/bin/env bash
# Written by scripts/install-perf-analyzer.sh: perf_analyzer $version with its libcudart.so.12.
export LD_LIBRARY_PATH="$(cd "$cudart" && pwd)\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")" "\$@"
EOF
chmod 0755 "$wrapper"
"$wrapper" --version >/dev/null 2>&1 || "$wrapper" --help >/dev/null 2>&1 || {
    echo "perf_analyzer does not start; missing libraries:" >&2
    LD_LIBRARY_PATH="$cudart" ldd "$binary" | grep "not found" >&2 || true
    exit 1
}
echo "perf_analyzer $version installed: $wrapper"
