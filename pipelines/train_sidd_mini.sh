#!/usr/bin/env bash
# Train, or continue exactly where it stopped, the bundled model "sidd-mini" on the real SIDD tiles of
# ../shared/data/sidd-medium-mini (committed split naflow_aug/splits/sidd_mini.toml), politely (nice, one
# thread: on the shared 2-core machine one thread ran 2-6x faster than two).
#   pipelines/train_sidd_mini.sh [RUN_DIR] [extra naflow-aug train options, e.g. --steps 12000]
# Run it in the background: nohup pipelines/train_sidd_mini.sh /work/runs/sidd-mini >> sidd-mini.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/sidd-mini}
shift || true
SHARED=${NAFLOW_AUG_SHARED:-../shared}
OMP_NUM_THREADS=1 exec nice -n 10 .venv/bin/naflow-aug train --config pipelines/train_sidd_mini.toml \
    --data "$SHARED/data/sidd-medium-mini" --out "$RUN" --resume --no-progress "$@"
