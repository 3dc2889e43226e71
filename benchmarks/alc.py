"""ALC of the submission against simpler alternatives, side by side in one run.

    python benchmarks/alc.py --datasets D [D ...] [--time-budget 300 --t0 15] [--repeats 3] [--bundle bundle]
                             [--methods meta-learned,forced default,linear baseline] [--out runs/alc]
                             [--settings FILE]

For each dataset, through the local runner: (a) the meta-learned Model, (b) the same Model forced
to the bundle's default configuration (AUTODL_CONFIG=default: no selection; "forced NAME" forces the
bundle's configs/NAME.json instead), (c) the linear baseline of `benchmarks/baselines/linear`.
Each cell also names the configurations that were fine-tuned, in order (read from the run's log:
the selected one first, then those tried after a stall or a fault). `--settings` runs our Model with a settings file
(AUTODL_SETTINGS: e.g. one knob changed, to compare with a run without it). Prints a markdown
table (ALC, time to first prediction, final NAUC, per dataset and mean; with --repeats, the mean ±
standard deviation over repeats), also written to OUT/table.md, and one learning-curve figure per
dataset (first repeat). The CPU default
T = 300 s, t0 = 15 s keeps the platform's curve shape (T/t0 = 20);
`--time-budget 1200 --t0 60` reproduces the platform.
"""

from __future__ import annotations

import argparse
import os
import re
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

ROUND = re.compile(r"\[train\] round \d+ \((.+?)\):")


def method_of(name: str) -> tuple[Path, dict[str, str]]:
    """The code folder and environment of a method: one of METHODS, or "forced NAME" (configs/NAME.json)."""
    if name in METHODS:
        return METHODS[name]
    forced = name.removeprefix("forced ").strip() if name.startswith("forced ") else ""
    if forced:
        return REPO, {"AUTODL_CONFIG": forced}
    raise SystemExit(f"--methods: unknown method {name!r} (known: {', '.join(METHODS)}, or 'forced NAME')")


def fine_tuned(run_dir: Path) -> list[str]:
    """The configurations a run fine-tuned, in order, from its ingestion log (empty: none, or no log)."""
    log = run_dir / "ingestion.log"
    if not log.is_file():
        return []
    return list(dict.fromkeys(m.group(1) for m in ROUND.finditer(log.read_text(errors="replace"))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--time-budget", type=float, default=300.0)
    p.add_argument("--t0", type=float, default=15.0)
    p.add_argument("--bundle", default=str(REPO / "bundle"))
    p.add_argument("--out", default=str(REPO / "runs" / "alc"))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--settings", help="a RuntimeSettings JSON file for our Model (AUTODL_SETTINGS)")
    args = p.parse_args()
    os.environ["AUTODL_BUNDLE"] = os.path.abspath(args.bundle)
    if args.settings:
        from runtime.settings import load_settings

        os.environ["AUTODL_SETTINGS"] = os.path.abspath(args.settings)
        load_settings(args.bundle)  # a bad file fails here, naming it, not in every run
    methods = args.methods.split(",")
    for method in methods:
        method_of(method)  # an unknown method fails now, not after the first runs
    rows: dict[tuple[str, str], list[tuple[float, float | None, float, int, list[str]]]] = {}
    for dataset in args.datasets:
        name = Path(dataset).name
        runs = []
        for method in methods:
            code, env = method_of(method)
            for repeat in range(args.repeats):
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                out = Path(args.out) / name / method.replace(" ", "_") / (f"r{repeat}" if args.repeats > 1 else "")
                try:
                    result = run_local(dataset, str(code), str(out), time_budget=args.time_budget, t0=args.t0,
                                       overwrite=True, verbose=False)
                finally:
                    for k, v in saved.items():
                        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
                o = result.outcome
                configs = fine_tuned(out)
                rows.setdefault((name, method), []).append(
                    (o.alc, o.first_prediction_time, o.scores[-1] if o.scores else float("nan"), result.exit_code,
                     configs))
                if repeat == 0:
                    runs.append(str(out))
                print(f"[alc] {name} / {method} / repeat {repeat}: ALC {o.alc:.4f}, fine-tuned: "
                      f"{' > '.join(configs) or 'none'}", flush=True)
        compare(runs, str(Path(args.out) / f"curves-{name}.png"), t0=args.t0)
    repeats = f", mean ± sd of {args.repeats} repeats" if args.repeats > 1 else ""
    settings = f", settings {args.settings}" if args.settings else ""
    lines = [f"ALC benchmark: T = {args.time_budget:g} s, t0 = {args.t0:g} s, bundle {args.bundle}{settings}"
             f"{repeats}", "",
             "| dataset | " + " | ".join(f"{m}: ALC / first (s) / final NAUC / fine-tuned" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    names = [Path(d).name for d in args.datasets]

    def spread(values: list[float]) -> str:
        return f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""

    for name in names:
        cells = []
        for m in methods:
            runs_ = rows[(name, m)]
            alcs = [r[0] for r in runs_]
            firsts = [r[1] for r in runs_ if r[1] is not None]
            finals = [r[2] for r in runs_]
            failed = [r[3] for r in runs_ if r[3] != 0]
            flag = f" (exit {', '.join(map(str, failed))})" if failed else ""
            first = f"{statistics.fmean(firsts):.1f}" if firsts else "-"
            tuned = "; ".join(sorted({" > ".join(r[4]) or "none" for r in runs_}))
            cells.append(f"{statistics.fmean(alcs):.4f}{spread(alcs)} / {first} / {statistics.fmean(finals):.3f}"
                         f" / {tuned}{flag}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [statistics.fmean(statistics.fmean(r[0] for r in rows[(n, m)]) for n in names) for m in methods]
    lines.append("| **mean** | " + " | ".join(f"**{v:.4f}**" for v in means) + " |")
    table = "\n".join(lines) + "\n"
    (Path(args.out) / "table.md").write_text(table)
    print("\n" + table)
    print(f"table: {args.out}/table.md; figures: {args.out}/curves-<dataset>.png")


if __name__ == "__main__":
    main()
