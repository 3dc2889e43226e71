"""Several runs' learning curves on one figure, each with its ALC.

    python -m scoring.compare RUN_DIR [RUN_DIR ...] --out plot.png [--t0 60]

A RUN_DIR is a runner output folder (it holds `scores/scores.txt` and `predictions/start.txt`) or a
score folder holding `scores.txt` and `start.txt`. T is read from each run's `start.txt`.
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib.pyplot as plt

from scoring import files
from scoring.plot import plot_learning_curve

__all__ = ["load_run", "compare", "main"]


def load_run(run_dir: str) -> tuple[str, list[float], list[float], float]:
    """(task, timestamps, NAUC scores, T) of a run folder."""
    for scores_dir, start_dir in ((os.path.join(run_dir, "scores"), os.path.join(run_dir, "predictions")),
                                  (run_dir, run_dir)):
        scores_path = os.path.join(scores_dir, "scores.txt")
        info = files.read_start(os.path.join(start_dir, "start.txt"))
        if os.path.exists(scores_path) and info is not None:
            scores = files.read_scores(scores_path)
            return info.task_name, list(scores["timestamps"]), list(scores["nauc_scores"]), float(info.time_budget)
    raise FileNotFoundError(f"{run_dir}: no scores.txt with a start.txt (is it a runner output folder?)")


def compare(run_dirs: list[str], out: str, *, t0: float = 60.0) -> list[tuple[str, float]]:
    """Draw every run on one figure; return (run, ALC) pairs."""
    fig = None
    results = []
    budgets = set()
    for run_dir in run_dirs:
        task, timestamps, scores, budget = load_run(run_dir)
        budgets.add(budget)
        area, fig = plot_learning_curve(timestamps, scores, time_budget=budget, t0=t0, task_name=task, fig=fig,
                                        label=os.path.basename(os.path.normpath(run_dir)), fill=False)
        results.append((run_dir, area))
    if len(budgets) > 1:
        raise ValueError(f"runs have different time budgets {sorted(budgets)}; their curves are not comparable")
    fig.savefig(out)
    plt.close(fig)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--t0", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        results = compare(args.runs, args.out, t0=args.t0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run, area in results:
        print(f"{area:.4f}  {run}")
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
