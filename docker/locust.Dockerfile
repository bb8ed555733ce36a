# Load generator image for the `locust` profile: the project with its `loadtest` extra
# (Locust, tritonclient); the locustfile itself is mounted from ./loadtest.
FROM python:3.11-slim

# GRPC_DNS_RESOLVER=native: the gRPC users find `triton` through getaddrinfo, as the HTTP users do;
# gRPC's own c-ares resolver failed them all under podman (issue 18, docker/cpu/vaani.Dockerfile).
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 GRPC_DNS_RESOLVER=native
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/vaani-src
COPY pyproject.toml README.md ./
COPY vaani ./vaani
COPY build ./build
COPY client ./client
COPY loadtest ./loadtest
COPY benchmarks ./benchmarks
RUN python3 -m pip install ".[loadtest]" && rm -rf /tmp/vaani-src
WORKDIR /mnt/locust
