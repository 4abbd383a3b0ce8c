# MT-Opt for ROS 2. `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Each test session gets its own random ROS_DOMAIN_ID (see test/conftest.py).
PYTEST_ARGS ?=
# e.g. make demo DEMO_ARGS="--episodes 20 --sd-checkpoint runs/sd/sd.ckpt"
DEMO_ARGS ?=

.PHONY: setup test demo demo-graph lint format clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m mtopt_policy.demo $(DEMO_ARGS)

demo-graph: setup
	$(PY) -m mtopt_launch.demo

lint: setup
	$(VENV)/bin/ruff check src test scripts
	$(VENV)/bin/ruff format --check src test scripts

format: setup
	$(VENV)/bin/ruff check --fix src test scripts
	$(VENV)/bin/ruff format src test scripts

clean:
	rm -rf build $(VENV) src/*/*.egg-info .pytest_cache .ruff_cache
