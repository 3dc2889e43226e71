"""How much of a run's ALC the choice of fine-tuned configuration can reach at all.

    python benchmarks/selection_reach.py RUN [RUN ...] [--t0 15]

RUN is a run folder of the local runner (`benchmarks/alc.py` writes one per dataset and method:
OUT/<dataset>/<method>[/r<i>], holding `ingestion.log` and `scores/`). The Model selects a
configuration only after its first answers (pixel model, probe), so a portfolio member can change
the learning curve only from the end of its first fine-tuning round on. Per run this prints:

- ALC: the run's score.
- without network: the same curve where every answer that used a network's predictions holds the
  NAUC of the last answer that did not (what the run scores if fine-tuning never answered).
- perfect member: NAUC 1.0 from the first prediction after the first fine-tuning round (an upper
  bound for any configuration in the member's place, however good).
- reach: perfect member minus ALC, the most that choosing another member could have gained;
  network gain: ALC minus without network, what the member that ran contributed.

Which answer a prediction used is read from the log's "[test] answering with ..." lines (logged when
the answer changes) by time; the fine-tuning round from the first "[train] round 1" line. T is the
run's own (its `start.txt`).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scoring import files  # noqa: E402
from scoring.compare import load_run  # noqa: E402
from scoring.metrics import alc  # noqa: E402

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?\[(test|train)\] (answering with|round 1 )(.*)$")


def _epoch(stamp: str) -> float:
    """A log line's time (the local runner logs in the machine's local time)."""
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def read_run(run: Path) -> tuple[list[float], list[float], float, list[bool], float | None]:
    """Prediction times (s from start), their NAUC, T, whether each used a network, end of the first round."""
    _, times, naucs, budget = load_run(str(run))  # names the folder when it is not a finished run
    info = files.read_start(str(run / "predictions" / "start.txt")) or files.read_start(str(run / "start.txt"))
    answer_times: list[float] = []
    answer_nets: list[bool] = []
    first_round = None
    for line in (run / "ingestion.log").read_text(errors="replace").splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        t = _epoch(m.group(1)) - info.start_time
        if m.group(2) == "test":
            answer_times.append(t)
            answer_nets.append("network" in m.group(4))
        elif first_round is None:
            first_round = t
    # the answer of a prediction: the last one logged at or before it (the log is in time order)
    used = [bool(i) and answer_nets[i - 1] for i in (bisect.bisect_right(answer_times, t) for t in times)]
    return times, naucs, budget, used, first_round


def reach(run: Path, t0: float) -> dict[str, float]:
    times, naucs, budget, used, first_round = read_run(run)
    actual = alc(times, naucs, time_budget=budget, t0=t0)
    held, last = [], 0.0
    for nauc, net in zip(naucs, used):
        last = last if net else nauc
        held.append(last)
    without = alc(times, held, time_budget=budget, t0=t0)
    perfect = [1.0 if first_round is not None and t >= first_round else n for t, n in zip(times, naucs)]
    best = alc(times, perfect, time_budget=budget, t0=t0)
    return {"alc": actual, "without": without, "perfect": best,
            "round": float("nan") if first_round is None else first_round}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--t0", type=float, default=15.0)
    args = p.parse_args()
    rows = []
    print("| run | ALC | without network | network gain | perfect member | reach | first round ends (s) |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        try:
            r = reach(run, args.t0)
        except FileNotFoundError as exc:
            print(f"[reach] {exc}: skipped", file=sys.stderr)
            continue
        rows.append(r)
        print(f"| {run} | {r['alc']:.4f} | {r['without']:.4f} | {r['alc'] - r['without']:+.4f} | "
              f"{r['perfect']:.4f} | {r['perfect'] - r['alc']:+.4f} | {r['round']:.0f} |")
    if not rows:
        raise SystemExit("selection_reach: none of the folders is a finished run of the local runner")
    mean = {k: statistics.fmean(r[k] for r in rows) for k in ("alc", "without", "perfect")}
    print(f"| **mean** | {mean['alc']:.4f} | {mean['without']:.4f} | {mean['alc'] - mean['without']:+.4f} | "
          f"{mean['perfect']:.4f} | {mean['perfect'] - mean['alc']:+.4f} | |")


if __name__ == "__main__":
    main()
