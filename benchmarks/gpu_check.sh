#!/usr/bin/env bash
# One call proves the GPU path (issue 19): set up this machine's own Python and torch, then run
# benchmarks/gpu_check.py. Results: OUT/gpu_check.json, OUT/gpu_check.log (flat, nothing else).
#
#   benchmarks/gpu_check.sh --out OUT [--wheels .whl] [--device cuda|cpu] [--quick] [gpu_check.py options]
#
# - Python: $PYTHON, else the repository's .venv when present, else python3. torch is never installed or
#   changed: the project runs from the working tree (PYTHONPATH), its dependencies are not resolved.
# - --wheels DIR: wheels made by benchmarks/gpu_wheels.sh (albumentations and what it needs); installed
#   without deps and without an index into a folder under /tmp that goes on PYTHONPATH, only when the
#   module is missing. Without them the albumentations part is skipped and the JSON says so.
# - GPU_CHECK_TIMEOUT (seconds, default 450): a hard stop for the Python run; the JSON is written after
#   every section, so what finished comes back anyway.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="" WHEELS="" ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; ARGS+=("--out" "$2"); shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ -z "$OUT" ]; then echo "gpu_check.sh: --out DIR is required" >&2; exit 2; fi
mkdir -p "$OUT"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3)"; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 NAFLOW_AUG_SHARED="${NAFLOW_AUG_SHARED:-/nonexistent}"
echo "gpu_check.sh: python $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1))"

if [ -n "$WHEELS" ]; then
  if ! "$PY" -c 'import albumentations' 2>/dev/null; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
      SITE="$(mktemp -d /tmp/gpu_check_site.XXXXXX)"
      echo "gpu_check.sh: installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE (no deps, no index)"
      if ! "$PY" -m pip install --quiet --no-deps --no-index --target "$SITE" "$WHEELS"/*.whl; then
        echo "gpu_check.sh: pip could not install them; unpacking the wheels (zip files) instead"
        for w in "$WHEELS"/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
      fi
      export PYTHONPATH="$PYTHONPATH:$SITE"  # after the tree and the system: never shadows torch or numpy
      "$PY" -c 'import albumentations; print("gpu_check.sh: albumentations", albumentations.__version__)' \
        || echo "gpu_check.sh: albumentations still does not import; its part will be skipped"
    else
      echo "gpu_check.sh: no wheels in $WHEELS; the albumentations part will be skipped"
    fi
  fi
fi

if command -v timeout >/dev/null; then
  timeout --signal=TERM --kill-after=15 "${GPU_CHECK_TIMEOUT:-450}" "$PY" "$ROOT/benchmarks/gpu_check.py" "${ARGS[@]}"
else
  "$PY" "$ROOT/benchmarks/gpu_check.py" "${ARGS[@]}"  # no coreutils timeout: --budget-s still applies
fi
rc=$?
echo "gpu_check.sh: exit $rc; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
