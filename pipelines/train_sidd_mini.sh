#!/usr/bin/env bash
# Train, or continue exactly where it stopped, the bundled model "sidd-mini" on the real SIDD tiles of
# ../shared/data/sidd-medium-mini (committed split naflow_aug/splits/sidd_mini.toml), politely (nice, one
# thread: on the shared 2-core machine one thread ran 2-6x faster than two). Two stages:
#   1. RUN:           pipelines/train_sidd_mini.toml (20k steps from scratch)
#   2. RUN-continue:  pipelines/train_sidd_mini_continue.toml (6k more steps from stage 1's model.pt,
#                     then the prior refit); its model.pt is the bundled file.
#   pipelines/train_sidd_mini.sh [RUN_DIR]
# Run it in the background: nohup pipelines/train_sidd_mini.sh /work/runs/sidd-mini >> sidd-mini.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/sidd-mini}
SHARED=${NAFLOW_AUG_SHARED:-../shared}
export OMP_NUM_THREADS=1
nice -n 10 .venv/bin/naflow-aug train --config pipelines/train_sidd_mini.toml \
    --data "$SHARED/data/sidd-medium-mini" --out "$RUN" --resume --no-progress
nice -n 10 .venv/bin/naflow-aug train --config pipelines/train_sidd_mini_continue.toml \
    --data "$SHARED/data/sidd-medium-mini" --init "$RUN/model.pt" --out "$RUN-continue" --resume --no-progress
