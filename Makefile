# The two commands of the README:
#   make run    set up and run the bot (python -m bot)
#   make test   set up, check the import contracts and pass the test suite (CPU only, no
#               Discord, no hub)
# Both create ./.venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Tests and CI use the CPU build of torch; `make run` takes the newest build (CUDA on Linux).
TEST_TORCH ?= torch==2.13.0
RUN_TORCH  ?= torch
PYTEST_ARGS ?=
# Upscale 2×: spandrel without its torchvision requirement (see [upscale] in pyproject.toml).
FINISH_DEPS := "spandrel>=0.4" "einops>=0.7"

# What a borrowed GPU machine lacks (it has torch, transformers, accelerate and peft, and no
# package registry): the wheels ops/gpu-session.sh installs there, about 50 MB (64 MiB travel).
GPU_WHEELS := diffusers==0.42.1 av==18.1.0 pillow gguf ftfy wcwidth pytest pluggy iniconfig \
              requests urllib3 idna charset-normalizer certifi

.PHONY: run test bench clean gpu-wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TEST_TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps $(FINISH_DEPS)
	touch $@

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(RUN_TORCH)"
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps $(FINISH_DEPS)
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/python -m bot

test: $(VENV)/.test-installed
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench

gpu-wheels: | $(BIN)/python
	$(BIN)/python -m pip download -q --no-deps -d .whl --only-binary=:all: \
		--python-version 3.11 --platform manylinux_2_28_x86_64 $(GPU_WHEELS)

clean:
	rm -rf $(VENV)
