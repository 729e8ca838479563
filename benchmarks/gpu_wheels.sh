#!/usr/bin/env bash
# Fetch, here, the wheels that the GPU device machine lacks (it has PyTorch, numpy, opencv,
# pillow, safetensors, tqdm, pytest, ... but no gymnasium or ale-py, and no internet), for its
# Python 3.12, into .whl/ (git-ignored). benchmarks/gpu_check.sh installs them there.
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    "gymnasium==$(version gymnasium)" "ale-py==$(version ale-py)" \
    "farama-notifications==$(version farama-notifications)"
ls -l .whl
