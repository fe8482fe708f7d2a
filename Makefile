# make test: install everything from nothing and run the test suite.
# make demo: install everything from nothing and run the demo site against the simulator.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tool:Debian package, for what the tests run
SYSTEM_TOOLS := mosquitto:mosquitto mosquitto_sub:mosquitto-clients socat:socat \
	systemd-analyze:systemd

.PHONY: test demo lint bench bench-slow test-slow system-tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

# The tests start their own mosquitto broker and socat pty pairs and verify the systemd
# units; install what is missing.
system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  tool=$${pair%%:*}; package=$${pair#*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "please install:$$missing"; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: $(STAMP) system-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

test-slow: $(STAMP) system-tools
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# One table of the headline figures, written to bench/results.json (BENCH_ARGS=--quick for
# a shortened run); compare two with bench/compare.py OLD.json NEW.json.
bench: $(STAMP) system-tools
	$(PY) bench/run.py $(BENCH_ARGS)

demo: $(STAMP) system-tools
	$(PY) -m heatd.hil.demo

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .mypy_cache .hypothesis
