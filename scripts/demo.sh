#!/usr/bin/env bash
# The README's main command: run the local runner on a bundled sample dataset with this
# submission, print the ALC and the path of the learning-curve PNG.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
samples="${AUTODL_SAMPLES:-$here/../shared/data/autodl_samples}"
dataset="${DEMO_DATASET:-$samples/miniciao}"
missing=()
[ -f scoring/run.py ] || missing+=("the local runner (scoring/run.py, issue 'Scoring and the local runner')")
[ -f model.py ] || missing+=("the submission's Model (model.py, issue 'The submission')")
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo unavailable: not implemented yet:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
out="${DEMO_OUT:-$here/runs/demo}"
exec .venv/bin/python -m scoring.run --dataset-dir "$dataset" --code-dir "$here" --output-dir "$out" \
  --time-budget "${DEMO_TIME_BUDGET:-300}" --t0 "${DEMO_T0:-15}" --overwrite
