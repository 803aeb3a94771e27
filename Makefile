# Two entry points: `make run` (install + open the dashboard on the demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run test demo-assets benchmarks clean

# pip compiles what it installs on one core; compileall does it on every core, in about half the time. Compiled
# files must exist before the first run: where PYTHONDONTWRITEBYTECODE is set (as in many container images) Python
# never writes them itself, and every process compiled TensorFlow's sources anew (13 s before the first page).
# The packages' own tests folders and pip are never imported by the app or the suite: not compiling their 3,300 files
# saves about 5 s of the 20.
PIP_INSTALL := $(VENV_PYTHON) -m pip install --quiet --no-compile
COMPILE := $(VENV_PYTHON) -m compileall -q -j 0 -x '/(tests|pip)/'

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(VENV_PYTHON)
	$(PIP_INSTALL) -r requirements.txt
	$(PIP_INSTALL) --no-deps -e .
	$(COMPILE) $(VENV)/lib
	touch $@

# only what this step added or replaced is compiled: a pass over all of TensorFlow again costs about 6 s
$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PIP_INSTALL) -r requirements-dev.txt
	find $(VENV)/lib/python*/site-packages -mindepth 1 -maxdepth 1 -newer $(VENV)/.runtime-installed \
		-exec $(COMPILE) {} +
	touch $@

run: $(VENV)/.runtime-installed
	$(VENV_PYTHON) -m streamlit run dashboard/server.py

# Three test processes on two cores: while one waits on a browser, a server or a subprocess, the others compute
# (with two, a core stood idle a fifth of the run). Each test module stays on one process (its module-scoped
# servers and trained runs are made once).
TEST_WORKERS ?= 3

test: $(VENV)/.dev-installed
	$(VENV_PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Rebuilds everything in assets/ from the project's own code (seeded, so the same every time).
demo-assets: $(VENV)/.runtime-installed
	$(VENV_PYTHON) -m assets.build

benchmarks: $(VENV)/.dev-installed
	$(VENV_PYTHON) -m benchmarks.core_speed
	$(VENV_PYTHON) -m benchmarks.dashboard_speed
	$(VENV_PYTHON) -m benchmarks.memory_bank_speed
	$(VENV_PYTHON) -m benchmarks.memory_bank_search
	$(VENV_PYTHON) -m benchmarks.detector_speed

clean:
	rm -rf $(VENV) .pytest_cache
