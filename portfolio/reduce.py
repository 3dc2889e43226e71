"""Greedy portfolio reduction (forward selection over a performance matrix).

    python -m portfolio.reduce --matrix matrix.csv --size m [--objective mixed|mean|min] [--curve plot.png]
                               [--out portfolio.txt]

A portfolio's value on a dataset is the best score of its members there; over datasets it is
aggregated by `mean`, `min`, or the paper's `mixed` = 0.5 * (min + mean). Starting empty, the
configuration that raises the aggregate most is added until m members. A crashed (empty) cell
never counts as a score: a dataset on which no member has a result makes the portfolio worse
than any that covers it. Ties go to the configuration first in the matrix's column order.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from portfolio.matrix import read_matrix

__all__ = ["OBJECTIVES", "portfolio_value", "greedy_portfolio", "distinct_configs", "main"]

OBJECTIVES = ("mixed", "mean", "min")
Matrix = dict[str, dict[str, float | None]]


def portfolio_value(matrix: Matrix, members: Sequence[str], objective: str = "mixed") -> float:
    """Aggregate over datasets of the best member score (-inf when a dataset has none)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    best = []
    for row in matrix.values():
        scores = [row[m] for m in members if row[m] is not None]
        if not scores:
            return -math.inf
        best.append(max(scores))
    mean, low = sum(best) / len(best), min(best)
    return {"mean": mean, "min": low, "mixed": 0.5 * (low + mean)}[objective]


def greedy_portfolio(matrix: Matrix, size: int, objective: str = "mixed", min_gain: float | None = None
                     ) -> list[tuple[str, float]]:
    """[(member, portfolio value after adding it), ...] in selection order; with `min_gain`, stop before
    `size` once the best addition raises the value by no more than that (a member that adds nothing is
    only another thing to select wrongly)."""
    configs = list(next(iter(matrix.values())))
    if not 1 <= size <= len(configs):
        raise ValueError(f"size must be in [1, {len(configs)}], got {size}")
    chosen: list[str] = []
    steps = []
    for _ in range(size):
        candidates = [(portfolio_value(matrix, chosen + [c], objective), -i, c)
                      for i, c in enumerate(configs) if c not in chosen]
        value, _, best = max(candidates)
        if min_gain is not None and steps and value - steps[-1][1] <= min_gain:
            break
        chosen.append(best)
        steps.append((best, value))
    return steps


def distinct_configs(paths: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Configuration files by name, one per distinct member (equal but for the name, with equal run-time
    settings in the `<name>.settings.json` beside it: the first kept), and the names dropped -> the name kept.
    Per-dataset searches often end on the same incumbent; as two matrix columns it is one member counted
    twice. Whole-pipeline incumbents that share a configuration but not their settings are two members."""
    from learner.config import TrainConfig
    from runtime.settings import member_key, read_settings_file

    kept: dict[str, str] = {}
    dropped: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, path in paths.items():
        settings = Path(path).with_suffix(".settings.json")
        key = member_key(TrainConfig.load(path), read_settings_file(str(settings)) if settings.exists() else None)
        if key in seen:
            dropped[name] = seen[key]
        else:
            seen[key] = name
            kept[name] = path
    return kept, dropped


def _plot_curve(matrix: Matrix, objective: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = greedy_portfolio(matrix, len(next(iter(matrix.values()))), objective)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(steps) + 1), [v for _, v in steps], marker="o")
    ax.set_xlabel("portfolio size")
    ax.set_ylabel(f"portfolio performance ({objective})")
    ax.grid(True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.reduce", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--objective", choices=OBJECTIVES, default="mixed")
    p.add_argument("--min-gain", type=float, help="stop once an addition raises the value by no more than this")
    p.add_argument("--curve", help="PNG of portfolio performance against size 1..M")
    p.add_argument("--out", help="write the members, one per line")
    args = p.parse_args(argv)
    try:
        matrix = read_matrix(args.matrix)
        steps = greedy_portfolio(matrix, args.size, args.objective, args.min_gain)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"| size | added | {args.objective} |\n|---|---|---|")
    for i, (member, value) in enumerate(steps, start=1):
        print(f"| {i} | {member} | {value:.4f} |")
    if args.out:
        with open(args.out, "w") as f:
            f.write("".join(f"{m}\n" for m, _ in steps))
    if args.curve:
        _plot_curve(matrix, args.objective, args.curve)
        print(f"curve: {args.curve}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
