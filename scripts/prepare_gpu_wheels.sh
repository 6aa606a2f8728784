#!/usr/bin/env bash
# Download the wheels the GPU check needs into .whl/ (gitignored), for the GPU machine's Python.
#
# The GPU machine (see docs/gpu.md) has no network; its image already holds CUDA torch 2.11, nvcc, ninja, numpy,
# jaxtyping, rich, typing-extensions, packaging and pytest, so only gsplat itself travels. gsplat 1.5.3 is a
# pure-Python wheel (py3-none-any) holding its CUDA sources; it JIT-compiles them on first use there.
#
# Never put a torch wheel in .whl/: the GPU image's own CUDA torch must stay the one that is imported.
#
# Usage: bash scripts/prepare_gpu_wheels.sh [PYTHON]     (PYTHON runs pip here; default .venv/bin/python)
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
DEST=.whl
GPU_PYTHON_VERSION=3.12   # python3 on the GPU image (KINDS.md: Python 3.12.3)

# Wheels to carry, NAME==VERSION. Dependencies of gsplat 1.5.3 (Requires-Dist: jaxtyping, ninja, numpy, rich, torch,
# typing_extensions) and its undeclared one (packaging) are preinstalled on the GPU image.
WHEELS=("gsplat==1.5.3")

mkdir -p "$DEST"
# .whl/ must never be committed (the .gitignore has /.whl/; keep a local exclude as a second guard).
if [ -d .git ] && ! git check-ignore -q "$DEST/x.whl" 2>/dev/null; then
    echo "/.whl/" >> .git/info/exclude
fi

# Keep exactly one version of each carried package: two stop the whole install there.
for spec in "${WHEELS[@]}"; do
    name="${spec%%==*}"
    for old in "$DEST"/"${name}"-*.whl; do
        [ -e "$old" ] || continue
        case "$(basename "$old")" in
            "${name}-${spec##*==}-"*) ;;
            *) echo "removing other version: $old"; rm -f "$old" ;;
        esac
    done
done

# PIP_CONSTRAINT / the machine's constraint file pins torch for *this* machine; it must not steer a download for
# another one, hence the empty constraint.
PIP_CONSTRAINT= "$PY" -m pip download --no-deps --only-binary=:all: \
    --python-version "$GPU_PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST" "${WHEELS[@]}"

# Sanity checks: no torch travels, every wheel is a zip, and the total stays well under the 64 MiB tree limit.
if ls "$DEST"/torch-*.whl >/dev/null 2>&1; then
    echo "error: a torch wheel is in $DEST; remove it (the GPU image has its own CUDA torch)" >&2
    exit 1
fi
"$PY" - "$DEST" <<'EOF'
import sys, zipfile, pathlib
dest = pathlib.Path(sys.argv[1])
total = 0
for whl in sorted(dest.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        bad = z.testzip()
        assert bad is None, f"{whl}: corrupt member {bad}"
        meta = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [l.split(":", 1)[1].strip() for l in z.read(meta[0]).decode().splitlines()
                    if l.startswith("Requires-Dist:") and "extra ==" not in l]
    total += whl.stat().st_size
    print(f"{whl.name}: {whl.stat().st_size / 2**20:.1f} MiB; requires {', '.join(requires) or '-'}")
print(f"total {total / 2**20:.1f} MiB in {dest}/")
assert total < 48 * 2**20, "wheels too large to travel with the tree (64 MiB limit)"
EOF
