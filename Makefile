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

# aniposelib and Pose2Sim are the peers of the comparison, never runtime dependencies: installed here only, and
# their rows are simply left out when they do not install. Pose2Sim without its dependencies (they pull OpenSim,
# pose models and a GUI): only what its triangulation and filtering modules import. Seeds 3-5: the default
# preset was tuned on 0-2.
bench: setup
	$(VENV)/bin/pip install -q aniposelib || echo "aniposelib did not install: the benchmark leaves its rows out"
	$(VENV)/bin/pip install -q --no-deps pose2sim && $(VENV)/bin/pip install -q rtoml pandas opencv-python-headless c3d anytree statsmodels filterpy \
		|| echo "Pose2Sim did not install: the benchmark leaves its rows out"
	$(VENV)/bin/skelsplat bench --seeds 3,4,5 --paper-frames 1 --speed portrait:heavy,lab:realistic --markdown out/bench_table.md

# Build folders only; the venv stays (delete it by hand for a from-scratch setup).
clean:
	rm -rf build
