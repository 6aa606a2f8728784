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

# aniposelib is the peer of the comparison, never a runtime dependency: installed here only, and its rows are
# simply left out when it does not install. Seeds 3-5: the default preset was tuned on 0-2.
bench: setup
	$(VENV)/bin/pip install -q aniposelib || echo "aniposelib did not install: the benchmark leaves its rows out"
	$(VENV)/bin/skelsplat bench --seeds 3,4,5 --paper-frames 1 --speed portrait:heavy,lab:realistic --markdown out/bench_table.md

# Build folders only; the venv stays (delete it by hand for a from-scratch setup).
clean:
	rm -rf build
