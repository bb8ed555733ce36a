# Triton server for the GPU deployment: the NGC image plus what the python-backend steps
# (preprocess, ctc_decoder) import: this project and its base dependencies (numpy<2,
# soundfile, soxr, ...). No torch, transformers or ONNX Runtime: the acoustic step is the
# TensorRT plan, which Triton's own TensorRT backend runs.
ARG TRITON_TAG=25.01
FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3

# The image's Python is the system one (PEP 668 marks it externally managed).
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

WORKDIR /tmp/vaani-src
COPY pyproject.toml README.md ./
COPY vaani ./vaani
COPY build ./build
COPY client ./client
COPY loadtest ./loadtest
COPY benchmarks ./benchmarks
RUN python3 -m pip install . \
    && python3 -c "import vaani.serving.preprocessing, vaani.serving.ctc, vaani.build.tensorrt.plan_guard" \
    && rm -rf /tmp/vaani-src
WORKDIR /
# plan_guard execs tritonserver, so the runtime's SIGTERM reaches it directly: Triton's own stop,
# which lets HTTP requests in flight finish but fails gRPC requests already past the ensemble's first
# step (measured with the pip 2.51 server, README "A server that stays up").
STOPSIGNAL SIGTERM
