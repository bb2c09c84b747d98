#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (it has no network) into .whl/ (git-ignored; it
# travels with the working tree, ~10 MiB): albumentations and what it needs beyond what that machine has
# (Python 3.12, manylinux x86_64; numpy, scipy, opencv-python-headless, PyYAML, typing_extensions are
# there already). Versions: those of this checkout's .venv. benchmarks/gpu_check.sh --wheels .whl
# installs them there without deps or an index.
#   benchmarks/gpu_wheels.sh [DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.whl}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$DEST"
BINARY=(pydantic-core==2.50.5 stringzilla==5.3.2 simsimd==6.5.16)
PURE=(albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5)
for spec in "${BINARY[@]}"; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "$spec"
done
for spec in "${PURE[@]}"; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform any \
    -d "$DEST" "$spec"
done
n=$(ls "$DEST"/*.whl | wc -l)
want=$(( ${#BINARY[@]} + ${#PURE[@]} ))
ls -la "$DEST"
if [ "$n" -lt "$want" ]; then echo "gpu_wheels.sh: only $n of $want wheels in $DEST" >&2; exit 1; fi
echo "gpu_wheels.sh: $n wheels in $DEST ($(du -sh "$DEST" | cut -f1))"
