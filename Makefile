# Development entry points. VENV can be overridden: `VENV=/tmp/v make setup`.
# `make setup` is cheap when nothing changed (scripts/setup.sh keeps per-stage stamps in the venv),
# so every other target simply runs it first.

VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench clean

setup:
	bash scripts/setup.sh "$(VENV)"

test: setup
	$(PY) -m pytest

demo: setup
	$(VENV)/bin/skelsplat demo

bench: setup
	$(VENV)/bin/skelsplat bench

# Build folders only; the venv stays (delete it by hand for a from-scratch setup).
clean:
	rm -rf build
