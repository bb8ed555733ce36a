# The project's CPU image: one image, three roles in docker-compose.cpu.yml (Triton through
# `vaani serve`, the gateway, the Locust master and workers). Triton is the pip `tritonserver`
# of nvidia-pytriton with the ONNX Runtime engine; no torch: the model repository is built on
# the host (`vaani build`, which needs torch) and mounted read-only.
#
# BASE_IMAGE is any Debian bookworm root file system; `vaani compose-check` makes one with
# mmdebstrap when no registry is reachable.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# GRPC_DNS_RESOLVER=native: the gRPC clients of this image (the gateway, Locust's gRPC users) find
# `triton` through getaddrinfo, as the HTTP clients do, not through gRPC's own c-ares resolver.
# Under podman, c-ares against aardvark-dns failed every gRPC user of a Locust run ("DNS query
# cancelled" for triton:8001, issue 18) while HTTP, resolving the same name, succeeded.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRPC_DNS_RESOLVER=native \
    PATH=/opt/vaani/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# libpython3.11: the python backend stub links the interpreter's shared library. g++, cmake, zlib
# and boost: pip compiles `kenlm`, the LM of the beam-search decoder (the bundled model ships one).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv libpython3.11 libsndfile1 \
        python3-dev build-essential cmake zlib1g-dev libboost-program-options-dev libboost-system-dev \
        libboost-thread-dev libboost-test-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/vaani \
    && useradd --uid 1000 --create-home vaani

# A network that inspects TLS: pass its CA bundle as the build secret `ca-certificates`
# (`vaani compose-check` passes the host's); without it pip uses the image's own CAs. `RUN --mount`
# needs BuildKit (Docker's default builder since 23.0) or podman/buildah.
# Extras a tree lacks (gateway before it exists) are skipped by pip with a warning. The python
# backend stub for this interpreter is put in place here: the server runs as a user who cannot.
# That import runs from /, not the source tree: there `import vaani` would find ./vaani, which
# lacks the folders pip installs into the package (build/ as vaani.build, client/, loadtest/, …).
WORKDIR /tmp/vaani-src
COPY pyproject.toml README.md ./
COPY vaani ./vaani
COPY build ./build
COPY client ./client
COPY loadtest ./loadtest
COPY benchmarks ./benchmarks
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && pip install ".[serve,loadtest,gateway]" \
    && cd / && python -c "import vaani.serving.engines.onnxruntime, vaani.supervision.process as p; p.backend_directory()" \
    && rm -rf /tmp/vaani-src

USER vaani
WORKDIR /home/vaani
# The runtime's stop signal must reach `vaani serve` (exec form, as docker-compose.cpu.yml runs it:
# PID 1), which drains in-flight requests; tritonserver signalled itself fails gRPC requests in flight.
STOPSIGNAL SIGTERM
