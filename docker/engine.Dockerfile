# Engine builder for `make engine` without a local TensorRT: the NGC TensorRT image of the
# same TRITON_TAG as the server, so the plan's TensorRT equals the server's. Only the
# torch-free part of the project runs here (plan build and plan transcripts); export,
# reference transcripts and the accuracy gate run on the host.
ARG TRITON_TAG=25.01
FROM nvcr.io/nvidia/tensorrt:${TRITON_TAG}-py3

ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /tmp/vaani-src
COPY pyproject.toml README.md ./
COPY vaani ./vaani
COPY build ./build
COPY client ./client
COPY loadtest ./loadtest
COPY benchmarks ./benchmarks
# --no-deps: keep the image's numpy and TensorRT; the build step needs nothing else.
RUN python3 -m pip install --no-deps . "numpy>=1.24" \
    && python3 -c "import tensorrt, vaani.build.tensorrt.builder; print('TensorRT', tensorrt.__version__)" \
    && rm -rf /tmp/vaani-src
WORKDIR /workspace
