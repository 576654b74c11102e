# Two entry points that work on a fresh Debian machine with only python3:
#   make demo   - the whole method end to end on the procedural shapes (SEEDS=3 for three seeds)
#   make test   - the test suite (CPU, 8 fake devices)
# Each creates .venv when it is missing (and only then) and installs the pinned stack into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEEDS ?= 1
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint bench system-libs venv clean

# The stamp is rebuilt when the dependency lists change; the venv itself only when missing.
$(VENV)/.installed: setup.cfg requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e '.[test,torch]'
	@touch $@

venv: $(VENV)/.installed

# open3d links against libusb-1.0; jemalloc is optional (faster XLA on CPU, see DESIGN.md 4).
system-libs:
	@./launch/ensure_system_libs.sh

test: venv system-libs
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: venv system-libs
	$(PY) -m pytest -m "slow" -q $(PYTEST_ARGS)

demo: venv system-libs
	$(PY) launch/demo.py --out=$(DEMO_OUT) --seeds=$(SEEDS)

lint: venv
	$(VENV)/bin/ruff check mmpoint_jax launch configs tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
