"""Leave-one-dataset-out selection quality on any performance matrix.

    python -m portfolio.evaluate --matrix matrix.csv --meta-features meta.csv --selector knn [--k 1] [--safe]
    python -m portfolio.evaluate --matrix matrix.csv --selector mapping --mapping lodo.csv [--safe]

Both CSVs have dataset names in the first column (matrices and meta-features made elsewhere work
too). For each dataset d, the selector sees only the other datasets: `knn` takes the k nearest by
standardised meta-features and picks the configuration with the best mean score over them;
`mapping` reads which known dataset d was matched with (e.g. `fingerprint.evaluate
--leave-one-out --csv`) and picks that dataset's best configuration. Regret is d's oracle (its best
score) minus the score of the pick (a crashed pick scores 0 here, worst case for ALC-like scores).
Reported next to: single best (best mean over the other datasets), random (expected regret of a
uniform pick) and a `default` column when present. `--safe` never picks a configuration that
crashed (empty cell, or 0) on any of the other datasets.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from portfolio.matrix import read_labelled_csv, read_matrix

__all__ = ["Report", "read_table", "lodo_regret", "main"]

Matrix = dict[str, dict[str, float | None]]


@dataclass
class Report:
    name: str
    regrets: dict[str, float]
    picks: dict[str, str]
    oracle_hits: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.regrets.values())

    @property
    def median(self) -> float:
        return statistics.median(self.regrets.values())


def read_table(path: str) -> dict[str, list[float]]:
    """A meta-feature CSV: first column dataset names, the rest numbers."""
    return read_labelled_csv(path)[1]


def _score(matrix: Matrix, dataset: str, config: str) -> float:
    value = matrix[dataset][config]
    return 0.0 if value is None else value


def _allowed(matrix: Matrix, others: list[str], safe: bool) -> list[str]:
    configs = list(next(iter(matrix.values())))
    if not safe:
        return configs
    ok = [c for c in configs if all(matrix[o][c] not in (None, 0.0) for o in others)]
    if not ok:
        raise ValueError("--safe: every configuration crashed on some dataset")
    return ok


def _best_mean(matrix: Matrix, datasets: list[str], allowed: list[str]) -> str:
    return max(allowed, key=lambda c: (statistics.fmean(_score(matrix, d, c) for d in datasets), -allowed.index(c)))


def lodo_regret(matrix: Matrix, pick: Callable[[str, list[str], list[str]], str], name: str, *, safe: bool = False
                ) -> Report:
    """`pick(dataset, other datasets, allowed configurations) -> configuration` for each held-out dataset."""
    regrets, picks, hits = {}, {}, 0
    names = list(matrix)
    for d in names:
        others = [o for o in names if o != d]
        choice = pick(d, others, _allowed(matrix, others, safe))
        oracle = max(_score(matrix, d, c) for c in matrix[d])
        regrets[d] = oracle - _score(matrix, d, choice)
        picks[d] = choice
        hits += regrets[d] <= 1e-12
    return Report(name, regrets, picks, hits)


def knn_picker(matrix: Matrix, meta: dict[str, list[float]], k: int) -> Callable[[str, list[str], list[str]], str]:
    missing = [d for d in matrix if d not in meta]
    if missing:
        raise ValueError(f"meta-features missing for dataset(s): {', '.join(missing)}")

    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        x = np.array([meta[o] for o in others])
        mu, sd = x.mean(0), x.std(0) + 1e-12
        dist = np.sqrt((((x - mu) / sd - (np.array(meta[d]) - mu) / sd) ** 2).sum(1))
        nearest = [others[i] for i in np.argsort(dist, kind="stable")[:k]]
        return _best_mean(matrix, nearest, allowed)

    return pick


def mapping_picker(matrix: Matrix, mapping: dict[str, str]) -> Callable[[str, list[str], list[str]], str]:
    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        if d not in mapping:
            raise ValueError(f"the mapping has no entry for dataset {d!r}")
        match = mapping[d]
        if match not in others:
            raise ValueError(f"dataset {d!r} is mapped to {match!r}, which is not another dataset of the matrix")
        return _best_mean(matrix, [match], allowed)

    return pick


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", required=True)
    p.add_argument("--selector", choices=("knn", "mapping"), default="knn")
    p.add_argument("--meta-features", help="CSV of meta-features (knn)")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--mapping", help="CSV dataset,selected[,...] (mapping)")
    p.add_argument("--safe", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        matrix = read_matrix(args.matrix)
        if len(matrix) < 2:
            raise ValueError("leave-one-dataset-out needs at least two datasets")
        if args.selector == "knn":
            if not args.meta_features:
                raise ValueError("--selector knn needs --meta-features")
            picker = knn_picker(matrix, read_table(args.meta_features), args.k)
        else:
            if not args.mapping:
                raise ValueError("--selector mapping needs --mapping")
            with open(args.mapping, newline="") as f:
                picker = mapping_picker(matrix, {row[0]: row[1] for row in list(csv.reader(f))[1:]})
        reports = [lodo_regret(matrix, picker, args.selector, safe=args.safe),
                   lodo_regret(matrix, lambda d, o, a: _best_mean(matrix, o, a), "single best", safe=args.safe)]
        configs = list(next(iter(matrix.values())))
        if "default" in configs:
            reports.append(lodo_regret(matrix, lambda d, o, a: "default", "default"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    random_regret = {d: max(_score(matrix, d, c) for c in configs)
                     - statistics.fmean(_score(matrix, d, c) for c in configs) for d in matrix}
    print(f"leave-one-dataset-out regret on {len(matrix)} datasets x {len(configs)} configurations"
          f"{' (safe)' if args.safe else ''}")
    print("| method | mean regret | median regret | oracle hits |\n|---|---|---|---|")
    for r in reports:
        print(f"| {r.name} | {r.mean:.4f} | {r.median:.4f} | {r.oracle_hits}/{len(matrix)} |")
    print(f"| random (expected) | {statistics.fmean(random_regret.values()):.4f} | "
          f"{statistics.median(random_regret.values()):.4f} | - |")
    print("\n| dataset | " + " | ".join(f"{r.name} pick" for r in reports) + " |")
    print("|---|" + "---|" * len(reports))
    for d in matrix:
        print(f"| {d} | " + " | ".join(f"{r.picks[d]} ({r.regrets[d]:.3f})" for r in reports) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
