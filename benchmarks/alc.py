"""ALC of the submission against simpler alternatives, side by side in one run.

    python benchmarks/alc.py --datasets D [D ...] [--time-budget 300 --t0 15] [--bundle bundle] [--out runs/alc]

For each dataset, through the local runner: (a) the meta-learned Model, (b) the same Model forced
to the bundle's default configuration (AUTODL_CONFIG=default: no selection), (c) the linear
baseline of `benchmarks/baselines/linear`. Prints a markdown table (ALC, time to first prediction,
final NAUC, per dataset and mean), also written to OUT/table.md, and one learning-curve figure
per dataset. The CPU default T = 300 s, t0 = 15 s keeps the platform's curve shape (T/t0 = 20);
`--time-budget 1200 --t0 60` reproduces the platform.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scoring.compare import compare  # noqa: E402
from scoring.run import run_local  # noqa: E402

METHODS = {
    "meta-learned": (REPO, {}),
    "forced default": (REPO, {"AUTODL_CONFIG": "default"}),
    "linear baseline": (REPO / "benchmarks" / "baselines" / "linear", {}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--time-budget", type=float, default=300.0)
    p.add_argument("--t0", type=float, default=15.0)
    p.add_argument("--bundle", default=str(REPO / "bundle"))
    p.add_argument("--out", default=str(REPO / "runs" / "alc"))
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args()
    os.environ["AUTODL_BUNDLE"] = os.path.abspath(args.bundle)
    methods = args.methods.split(",")
    rows = {}
    for dataset in args.datasets:
        name = Path(dataset).name
        runs = []
        for method in methods:
            code, env = METHODS[method]
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            out = Path(args.out) / name / method.replace(" ", "_")
            try:
                result = run_local(dataset, str(code), str(out), time_budget=args.time_budget, t0=args.t0,
                                   overwrite=True, verbose=False)
            finally:
                for k, v in saved.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            o = result.outcome
            rows[(name, method)] = (o.alc, o.first_prediction_time, o.scores[-1] if o.scores else float("nan"),
                                    result.exit_code)
            runs.append(str(out))
            print(f"[alc] {name} / {method}: ALC {o.alc:.4f}", flush=True)
        compare(runs, str(Path(args.out) / f"curves-{name}.png"), t0=args.t0)
    lines = [f"ALC benchmark: T = {args.time_budget:g} s, t0 = {args.t0:g} s, bundle {args.bundle}", "",
             "| dataset | " + " | ".join(f"{m}: ALC / first (s) / final NAUC" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    names = [Path(d).name for d in args.datasets]
    for name in names:
        cells = []
        for m in methods:
            a, first, final, code = rows[(name, m)]
            flag = "" if code == 0 else f" (exit {code})"
            cells.append(f"{a:.4f} / {'-' if first is None else f'{first:.1f}'} / {final:.3f}{flag}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [statistics.fmean(rows[(n, m)][0] for n in names) for m in methods]
    lines.append("| **mean** | " + " | ".join(f"**{v:.4f}**" for v in means) + " |")
    table = "\n".join(lines) + "\n"
    (Path(args.out) / "table.md").write_text(table)
    print("\n" + table)
    print(f"table: {args.out}/table.md; figures: {args.out}/curves-<dataset>.png")


if __name__ == "__main__":
    main()
