# vaani entry points. `make setup && make serve MODEL=models/tiny-hindi`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VAANI := $(VENV)/bin/vaani
MODEL ?= ai4bharat/indicwav2vec-hindi
ENGINE ?= onnxruntime
REPOSITORY ?= model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
GATEWAY_PORT ?= 8080
HTTP_URL ?= localhost:$(HTTP_PORT)
GRPC_URL ?= localhost:$(GRPC_PORT)
OUTPUT ?= results
PRECISION ?= fp16
TRITON_TAG ?= 25.01
TESTSET := data/tiny-hindi-test/test.jsonl
OOVSET := data/tiny-hindi-oov/test.jsonl
MANIFEST ?= $(TESTSET)
# More `vaani build`/`vaani serve` options, e.g. SERVE_ARGS="--decoder greedy" (`vaani serve --help` lists them)
SERVE_ARGS ?=
export TRITON_TAG
SETUP_STAMP := $(VENV)/.setup-complete

.PHONY: setup serve gateway build engine testset oovset decoders wer test lint clean compose-check

## setup: .venv with the project, its Python dependencies and the Debian packages it needs
setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml scripts/system-packages.sh scripts/install-perf-analyzer.sh
	scripts/system-packages.sh
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else f"Python 3.10-3.12 needed, {sys.version.split()[0]} found: make setup PYTHON=python3.11")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[serve,build,eval,loadtest,gateway,dev]"
	scripts/install-perf-analyzer.sh $(VENV)
	touch $@

## build: export MODEL and write the Triton repository (cached)
build: setup
	$(VAANI) build --model $(MODEL) --engine $(ENGINE) --repository $(REPOSITORY) $(SERVE_ARGS)

## serve: build if needed, then run tritonserver (and the gateway on GATEWAY_PORT, 0: none) on localhost
serve: setup
	$(VAANI) serve --model $(MODEL) --engine $(ENGINE) --repository $(REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		--gateway-port $(GATEWAY_PORT) $(SERVE_ARGS)

## gateway: the OpenAI-compatible API and web page on GATEWAY_PORT, in front of a running Triton (GRPC_URL)
gateway: setup
	$(VAANI) gateway --triton-url $(GRPC_URL) --port $(GATEWAY_PORT)

## test: the whole suite against a real tritonserver and the CPU container stack (sets itself up)
test: setup
	docker info >/dev/null 2>&1 || scripts/system-packages.sh containers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -rs

## testset: regenerate the bundled model's held-out test set (espeak-ng, from models/tiny-hindi/testset.jsonl)
testset: $(TESTSET)

$(TESTSET): models/tiny-hindi/testset.jsonl | $(SETUP_STAMP)
	$(VAANI) corpus --split test --plan $< --output $(dir $@)

## oovset: 20 sentences mostly of words the bundled LM never saw, 4 espeak-ng voices (benchmarks/oov-plan.jsonl)
oovset: $(OOVSET)

$(OOVSET): benchmarks/oov-plan.jsonl | $(SETUP_STAMP)
	$(VAANI) corpus --split test --plan $< --output $(dir $@)

## decoders: greedy vs beam vs beam + LM on the test set and the out-of-vocabulary set (no server)
decoders: $(TESTSET) $(OOVSET)
	$(VAANI) wer $(TESTSET) --also $(OOVSET) --compare-decoders models/tiny-hindi --decoders-only

## wer: WER/CER of the running server (HTTP_URL) on MANIFEST (default: the bundled test set) into OUTPUT/wer
wer: setup $(if $(filter $(TESTSET),$(MANIFEST)),$(TESTSET))
	$(VAANI) wer $(MANIFEST) --url $(HTTP_URL) --concurrency 4 --output $(OUTPUT)/wer \
		$(if $(filter $(TESTSET),$(MANIFEST)),--reference models/tiny-hindi)

## engine: TensorRT plan for MODEL into the repository, gated on CER (GPU + TensorRT, or Docker)
engine: setup $(if $(filter $(TESTSET),$(MANIFEST)),$(TESTSET))
	$(VAANI) engine --model $(MODEL) --precision $(PRECISION) --repository $(REPOSITORY) --manifest $(MANIFEST)

## compose-check: docker-compose.cpu.yml built, brought up (Docker, else podman), checked, torn down; log in OUTPUT/compose-check
compose-check: setup
	docker info >/dev/null 2>&1 || scripts/system-packages.sh containers
	$(VAANI) compose-check --output $(OUTPUT)/compose-check

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

## clean: remove generated engines, ONNX and configs from the repository
clean: setup
	$(VAANI) clean --repository $(REPOSITORY)

# ---- load tests, perf_analyzer, bench (issue 4) -------------------------------------------------
# Against a running server (make serve): HTTP_URL, GRPC_URL; results into OUTPUT.
USERS ?= 4
LOAD_SECONDS ?= 60
CONCURRENCY ?= 1:4:1
BENCH_MODEL ?= models/tiny-hindi
# The CPU serving settings the recorded results use: one single-threaded wav2vec2 instance per core, no batching.
BENCH_ARGS ?= --acoustic-instances $(shell nproc) --threads 1 --max-batch-size 1
PERF_ANALYZER := $(VENV)/bin/perf_analyzer

SOAK_CLIENTS ?= 8
SOAK_MINUTES ?= 10

.PHONY: loadtest perf bench perf-analyzer soak fairness soak-attack stream-bench

## perf-analyzer: perf_analyzer 2.51.0 from the tritonclient wheel into the venv (make setup does it too)
perf-analyzer: $(PERF_ANALYZER)

$(PERF_ANALYZER): scripts/install-perf-analyzer.sh | $(SETUP_STAMP)
	scripts/install-perf-analyzer.sh $(VENV)

## loadtest: Locust (HTTP + gRPC users, mixed-length clips) against HTTP_URL/GRPC_URL; CSV + HTML into OUTPUT
loadtest: setup
	$(VAANI) loadtest --http-url $(HTTP_URL) --grpc-url $(GRPC_URL) --output $(OUTPUT)/loadtest \
		--users $(USERS) --seconds $(LOAD_SECONDS)

## perf: perf_analyzer over CONCURRENCY against GRPC_URL; CSV, composing-model CSV and PNG into OUTPUT
perf: setup $(PERF_ANALYZER)
	$(VAANI) perf --http-url $(HTTP_URL) --grpc-url $(GRPC_URL) --output $(OUTPUT)/perf \
		--concurrency $(CONCURRENCY)

## bench: Triton vs HF pipeline, ONNX Runtime and FastAPI for BENCH_MODEL (base-random: base size); own servers
bench: setup
	$(VAANI) bench --model $(BENCH_MODEL) --output $(OUTPUT)/bench/$(notdir $(BENCH_MODEL)) --seconds $(LOAD_SECONDS) \
		--users $(USERS) $(BENCH_ARGS)

## fairness: a 2 s request beside a 10-minute recording, this checkout against FAIRNESS_BASELINE's serving code (own servers)
FAIRNESS_BASELINE ?= 75edb62
fairness: setup $(TESTSET)
	$(VENV)/bin/python -m vaani.benchmarks.fairness --baseline-commit $(FAIRNESS_BASELINE) --output $(OUTPUT)/fairness

## stream-bench: real-time streams to asr_stream (1, 2, 4, 8 at 200 ms chunks; chunk lengths) against per-chunk latency (own servers)
stream-bench: setup
	$(VENV)/bin/python -m vaani.benchmarks.streaming --model $(BENCH_MODEL) --output $(OUTPUT)/streaming

## soak-attack: make soak with an attacker after a calm minute (bombs and held connections at GATEWAY_PORT, random logits to ctc_decoder)
soak-attack: setup
	$(VAANI) soak --http-url $(HTTP_URL) --grpc-url $(GRPC_URL) --output $(OUTPUT)/attack \
		--clients $(SOAK_CLIENTS) --minutes $(SOAK_MINUTES) --attack localhost:$(GATEWAY_PORT)

## soak: SOAK_CLIENTS gRPC clients for SOAK_MINUTES against GRPC_URL: failures, latency per minute, RSS per process
soak: setup
	$(VAANI) soak --http-url $(HTTP_URL) --grpc-url $(GRPC_URL) --output $(OUTPUT) \
		--clients $(SOAK_CLIENTS) --minutes $(SOAK_MINUTES)
