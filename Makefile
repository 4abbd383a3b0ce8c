# MT-Opt for ROS 2. `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
# Python caches the bytecode of what it imports (__pycache__, gitignored) in these recipes even
# where the environment sets PYTHONDONTWRITEBYTECODE (this platform does): setup compiles no
# bytecode, so without the cache every test process would compile torch & co. at import.
unexport PYTHONDONTWRITEBYTECODE
VENV ?= .venv
PY := $(VENV)/bin/python
# Each test session gets its own random ROS_DOMAIN_ID (see test/conftest.py). The computation
# tests, then the timed (ROS) tests, run on TEST_WORKERS pytest-xdist workers
# (scripts/run_tests.sh).
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
# make demo: collect -> learn -> act -> report (runs/demo/<time>/), about 13 min on 2 cores
# (docs/results/demo.md). With the released models (DEMO_RELEASED_ARGS): the released success
# detector grades every episode beside the oracle (the cameras publish 128 px frames, its
# size), and stage 3 acts with the released on-policy lift network (its camera and action
# frame come from the policy settings it records).
# make demo DEMO_RELEASED=0: no SD, and stage 3 acts with stage 2's network instead.
# Options: make demo DEMO_ARGS="--help"
# make demo-collect: collection only, e.g. make demo-collect DEMO_ARGS="--episodes 20"
DEMO_ARGS ?=
DEMO_RELEASED ?= 1
DEMO_RELEASED_ARGS := --act-with models/lift_any_wrist_tool_onpolicy_qnet.ckpt \
	--sd-checkpoint models/success_detector_sim.ckpt --lift-only

.PHONY: setup test demo demo-collect lint format clean

setup:
	@bash scripts/setup.sh

test: setup
	bash scripts/run_tests.sh $(PY) $(TEST_WORKERS) $(PYTEST_ARGS)

demo: setup
	$(PY) -m mtopt_demo $(if $(filter 1,$(DEMO_RELEASED)),$(DEMO_RELEASED_ARGS)) $(DEMO_ARGS)

demo-collect: setup
	$(PY) -m mtopt_demo --collect-only $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check src test scripts
	$(VENV)/bin/ruff format --check src test scripts

format: setup
	$(VENV)/bin/ruff check --fix src test scripts
	$(VENV)/bin/ruff format src test scripts

clean:
	rm -rf build $(VENV) src/*/*.egg-info .pytest_cache .ruff_cache
