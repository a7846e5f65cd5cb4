# The two user commands: `make demo` and `make test`. Both create .venv with the machine's python3 when
# missing, install the pinned set from requirements/lock.txt, and reinstall only when the pins change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PINS_HASH := $(shell cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(PINS_HASH)
# `make demo` runs with random weights, offline and fast; `make demo DEMO_WEIGHTS=official` downloads OpenAI's
# CLIP and bart-base into the Hugging Face cache on first use (see README, "Weights").
DEMO_WEIGHTS ?= random
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup test demo bench lint clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# Two pytest workers (one per core of the reference machine); --dist loadscope keeps a module's tests, and so its
# module-scoped fixtures, on one worker. PYTEST_WORKERS=0 runs in this process (for pdb).
PYTEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/vlpet demo --weights $(DEMO_WEIGHTS) $(DEMO_ARGS)

bench: setup
	$(PY) bench/model.py

lint: setup
	$(PY) -m ruff check vlpet features pipelines flows tests bench

clean:
	rm -rf $(VENV) .pytest_cache
