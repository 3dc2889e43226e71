#!/usr/bin/env bash
# The README's main command: the local runner on a bundled sample dataset with this submission and
# its bundled portfolio; prints the ALC, the first-prediction time, the selected configuration and
# the path of the learning-curve PNG. DEMO_DATASET, DEMO_TIME_BUDGET, DEMO_T0, DEMO_OUT override.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
samples="${AUTODL_SAMPLES:-$here/../shared/data/autodl_samples}"
dataset="${DEMO_DATASET:-$samples/miniciao}"
out="${DEMO_OUT:-$here/runs/demo}"
if [ ! -f bundle/manifest.json ]; then
  echo "demo unavailable: no bundled portfolio in $here/bundle (build it with 'make meta-train')" >&2
  exit 1
fi
status=0
.venv/bin/python -m scoring.run --dataset-dir "$dataset" --code-dir "$here" --output-dir "$out" \
  --time-budget "${DEMO_TIME_BUDGET:-300}" --t0 "${DEMO_T0:-15}" --overwrite || status=$?
echo "selection (from $out/ingestion.log):"
grep -E "\[select\]|\[train\] probe" "$out/ingestion.log" | sed -e 's/^.*INFO [a-z.]*: /  /' || true
exit $status
