"""Does a matrix's fidelity rank configurations as the proxy budget does? Rank correlation on a sample of cells.

    python benchmarks/fidelity.py --configs DIR --low matrix.csv --datasets D [D ...] --budget 300
                                  [--weights-dir W] [--probe NET:FILE@SIDE] [--max-samples N] --out full.csv

Runs every configuration of DIR on the given datasets at the full budget (through `portfolio.matrix`, so
with the same objective, settings files and probe, resumable from `full.csv.runs.jsonl`), then prints each
cell at both fidelities and: Spearman's rho over all the cells, the mean per-dataset Spearman over the
configurations, and how often the low fidelity's best configuration is the full budget's best.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portfolio.matrix import read_matrix, run_matrix  # noqa: E402


def correlations(low: dict[str, dict[str, float | None]], full: dict[str, dict[str, float | None]]
                 ) -> tuple[float, float | None, int, int]:
    """(rho over all cells, mean per-dataset rho, datasets whose best agrees, datasets compared)."""
    from scipy.stats import spearmanr

    pairs = [(low[d][c], full[d][c]) for d in full for c in full[d]
             if full[d][c] is not None and low.get(d, {}).get(c) is not None]
    if len(pairs) < 3:
        raise ValueError(f"only {len(pairs)} cells have both fidelities; need at least 3")
    overall = float(spearmanr(*zip(*pairs)).statistic)
    per_dataset, agree, compared = [], 0, 0
    for d in full:
        cells = [c for c in full[d] if full[d][c] is not None and low.get(d, {}).get(c) is not None]
        if len(cells) < 2:
            continue
        compared += 1
        agree += max(cells, key=lambda c: low[d][c]) == max(cells, key=lambda c: full[d][c])
        rho = spearmanr([low[d][c] for c in cells], [full[d][c] for c in cells]).statistic
        if rho == rho:  # NaN when one side is constant
            per_dataset.append(float(rho))
    return overall, (statistics.fmean(per_dataset) if per_dataset else None), agree, compared


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", required=True)
    p.add_argument("--low", required=True, help="the matrix at the low fidelity")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--weights-dir")
    p.add_argument("--probe")
    p.add_argument("--max-samples", type=int)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from portfolio.objective import run_context

    try:
        context = run_context(max_samples=args.max_samples, probe=args.probe, weights_dir=args.weights_dir)
        low = read_matrix(args.low)
        full = run_matrix(args.configs, args.datasets, repeats=1, budget=args.budget, executor="local:1",
                          out=args.out, weights_dir=args.weights_dir, context=context)
        overall, per_dataset, agree, compared = correlations(low, full)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"| dataset | configuration | low fidelity ({Path(args.low).name}) | {args.budget:g} s |\n|---|---|---|---|")
    for d in full:
        for c, v in full[d].items():
            lv = low.get(d, {}).get(c)
            print(f"| {d} | {c} | {'crash' if lv is None else f'{lv:.4f}'} | {'crash' if v is None else f'{v:.4f}'} |")
    print(f"\nSpearman over {sum(v is not None for r in full.values() for v in r.values())} cells: {overall:.3f}; "
          f"mean per dataset: {'n/a' if per_dataset is None else f'{per_dataset:.3f}'}; "
          f"same best configuration on {agree}/{compared} datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
