# Sourced by the GPU machine scripts (gpu-machine.sh, gpu-serve-check.sh): puts vaani and the
# tritonserver parts of $CARRY/site.tar.xz under /tmp/site, as an install would lay them out, and
# gives the python-backend stub its path hook. Expects REPO (the checkout) and CARRY.
tar -xJf "$CARRY"/site.tar.xz -C /tmp
# vaani as installed: vaani.build, .client, .loadtest, .benchmarks live in build/, client/, loadtest/, benchmarks/.
rm -rf /tmp/site/vaani && cp -r "$REPO"/vaani /tmp/site/vaani
for sub in build client loadtest benchmarks; do cp -r "$REPO/$sub" /tmp/site/vaani/"$sub"; done
# tritonserver's python stub ignores PYTHONPATH but runs site.py of the environment it finds:
# a .pth hook there (benchmarks/vaani_stub_path.py) sets its sys.path from variables that the
# benchmark gives the server alone. Which environment the stub finds is its business, so every
# candidate gets the hook.
for SITE in $(python3 -c "import site; print(*site.getsitepackages())") \
    $(/usr/bin/python3.12 -c "import site; print(*site.getsitepackages())" 2>/dev/null || true); do
  mkdir -p "$SITE" && cp "$REPO"/benchmarks/vaani_stub_path.py "$SITE"/ && echo "import vaani_stub_path" > "$SITE"/vaani-stub-path.pth
done
