# Development entry points. VENV can be overridden: `VENV=/tmp/v make setup`.
# `make setup` is cheap when nothing changed (scripts/setup.sh keeps per-stage stamps in the venv),
# so every other target simply runs it first.

VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python

.PHONY: setup test colcon demo demo-video bench clean

setup:
	bash scripts/setup.sh "$(VENV)"

test: setup
	$(PY) -m pytest
	$(MAKE) colcon

# The package as a ROS 2 workspace builds and tests it: colcon build (CMakeLists.txt, ament_cmake + rosidl) into
# build/colcon, then colcon test, which runs the suite against the installed package (see CMakeLists.txt), and
# colcon test-result, which fails on any failed test. The venv's ament/rosidl wheels stand in for a ROS install.
COLCON_BASE := $(CURDIR)/build/colcon
COLCON := AMENT_PREFIX_PATH="$(VENV)" CMAKE_PREFIX_PATH="$(VENV)" PATH="$(VENV)/bin:$$PATH" \
	$(VENV)/bin/colcon --log-base "$(COLCON_BASE)/log"
# colcon builds a copy of the package: with the venv inside the repository (.venv), the numpy include folder that
# rosidl_generator_py exports would lie inside CMake's source folder, which CMake refuses for an installed target.
COLCON_SRC := $(COLCON_BASE)/src/skelsplat_ros
COLCON_PATHS := --paths "$(COLCON_SRC)" --build-base "$(COLCON_BASE)/build" --install-base "$(COLCON_BASE)/install"

colcon: setup
	rm -rf "$(COLCON_SRC)" && mkdir -p "$(COLCON_SRC)"
	tar -C "$(CURDIR)" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./install --exclude=./log \
		--exclude=./out --exclude=__pycache__ -cf - . | tar -C "$(COLCON_SRC)" -xf -
	$(PY) scripts/fix_cmake_exports.py "$(VENV)"
	$(COLCON) build $(COLCON_PATHS) --event-handlers console_cohesion+ \
		--cmake-args -DPython3_EXECUTABLE="$(PY)" -DBUILD_TESTING=ON -Wno-dev
	$(COLCON) test $(COLCON_PATHS) --event-handlers console_direct+
	$(COLCON) test-result --test-result-base "$(COLCON_BASE)/build" --verbose

demo: setup
	$(VENV)/bin/skelsplat demo

# The real multi-person take of the Pose2Sim demo (pose2sim 0.10.49 wheel, downloaded, never installed), from its four
# videos to pictures: detect -> fuse -> render, into out/pose2sim_multi/ (render.mp4 and the contact sheet render.png).
DEMO_VIDEO := $(CURDIR)/out/pose2sim_multi
demo-video: setup
	$(PY) scripts/fetch_pose2sim_multi.py
	$(VENV)/bin/skelsplat detect data/pose2sim_multi/videos/cam0*.mp4 --output $(DEMO_VIDEO)/keypoints.npz
	$(VENV)/bin/skelsplat fuse --calibration data/pose2sim_multi/calib.toml --keypoints $(DEMO_VIDEO)/keypoints.npz \
		--output $(DEMO_VIDEO)/people.npz
	$(VENV)/bin/skelsplat render $(DEMO_VIDEO)/people.npz --calibration data/pose2sim_multi/calib.toml \
		--videos data/pose2sim_multi/videos/cam0*.mp4 --output $(DEMO_VIDEO)/render.mp4

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
