"""The scoring program: scores predictions as they appear and enforces the time budget.

    python -m scoring.score --solution_dir S --prediction_dir P --score_dir O [--t0 60]

Arguments as the official `score.py`, so either half can pair with the official other half.
It waits for `start.txt`, scores each new `<task>.predict_<i>` (NAUC, soft accuracy when
multiclass), rewrites `scores.txt`, the learning-curve PNG and `detailed_results.html` on each,
and stops ingestion once `start_time + T` has passed (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metadata.check import read_solution
from metadata.errors import AutoDLDataError
from scoring import files
from scoring.metrics import ScoringError, alc, is_multiclass, nauc, soft_accuracy, valid_columns
from scoring.plot import save_learning_curve

__all__ = ["Outcome", "Evaluator", "task_name_of", "read_scorable_solution", "main"]

logger = logging.getLogger(__name__)


def task_name_of(solution_dir: str) -> tuple[str, str]:
    """(task name, solution path): the single `*.solution` file; the name is up to its first dot."""
    found = sorted(glob.glob(os.path.join(solution_dir, "*.solution")))
    if len(found) != 1:
        raise ScoringError(f"{solution_dir}: expected exactly one *.solution file, found {len(found)}")
    return os.path.basename(found[0]).split(".")[0], found[0]


def read_scorable_solution(path: str) -> np.ndarray:
    """The solution at `path`, which must have a valid column (a class present in some rows, absent from
    others): without one no prediction can be scored (the kit's scorer fails on each), whatever the model does."""
    solution = read_solution(path)
    if not valid_columns(solution).any():
        raise ScoringError(f"{path}: no valid column (every class is absent from all rows or present in all): "
                           "no prediction on this test set can be scored")
    return solution


@dataclass
class Outcome:
    """How a scoring run ended."""

    alc: float = 0.0
    timestamps: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    accuracy: list[float] | None = None
    ingestion_finished: bool = False       # end.txt appeared
    ingestion_success: bool | None = None  # its ingestion_success flag
    time_limit_exceeded: bool = False      # ingestion was killed at start + T
    started: bool = False                  # start.txt appeared
    error: str | None = None               # a prediction could not be scored

    @property
    def first_prediction_time(self) -> float | None:
        return self.timestamps[0] if self.timestamps else None


class Evaluator:
    """Scores one task's predictions as ingestion writes them.

    Args:
        solution_dir: folder with the single `<task>.solution`.
        prediction_dir: ingestion's output folder.
        score_dir: where `scores.txt`, the PNG and the HTML go.
        t0: time constant of the log time axis (60 on the platform).
        on_prediction: called after each scored prediction with (index, elapsed s, NAUC, ALC).
    """

    def __init__(self, solution_dir: str, prediction_dir: str, score_dir: str, *, t0: float = 60.0,
                 on_prediction: Callable[[int, float, float, float], None] | None = None):
        self.task, solution_path = task_name_of(solution_dir)
        self.solution = read_scorable_solution(solution_path)
        self.multiclass = is_multiclass(self.solution)
        self.prediction_dir, self.score_dir, self.t0 = prediction_dir, score_dir, t0
        self.on_prediction = on_prediction
        self.info: files.IngestionInfo | None = None
        self.seen: list[str] = []
        self.outcome = Outcome(accuracy=[] if self.multiclass else None)
        os.makedirs(score_dir, exist_ok=True)
        files.write_html(score_dir, waiting=True)

    @property
    def png_path(self) -> str:
        return os.path.join(self.score_dir, f"learning-curve-{self.task}.png")

    @property
    def time_budget(self) -> float:
        return float(self.info.time_budget) if self.info else 0.0

    def wait_for_start(self, timeout: float = 1800.0, poll: float = 1.0,
                       alive: Callable[[], bool] | None = None) -> bool:
        """Wait for `start.txt`; False on timeout or when `alive()` says ingestion has ended."""
        deadline = time.time() + timeout
        start_path = os.path.join(self.prediction_dir, "start.txt")
        while time.time() < deadline:
            self.info = files.read_start(start_path)
            if self.info is not None:
                self.outcome.started = True
                return True
            if alive is not None and not alive():
                return False
            time.sleep(poll)
        return False

    def score_new_predictions(self) -> int:
        """Score prediction files not seen yet; update the files. Returns how many were new."""
        new = [p for p in files.prediction_files(self.prediction_dir, self.task) if p not in self.seen]
        if not new:
            return 0
        out = self.outcome
        for path in new:
            prediction = files.read_prediction(path)
            try:
                out.scores.append(nauc(self.solution, prediction, name=path))
                if self.multiclass:
                    out.accuracy.append(soft_accuracy(self.solution, prediction))
            except ScoringError as exc:
                out.error = str(exc)
                raise
            self.seen.append(path)
        self.info = files.read_start(os.path.join(self.prediction_dir, "start.txt")) or self.info
        out.timestamps = self.info.relative_timestamps()[: len(self.seen)]
        out.alc = alc(out.timestamps, out.scores, time_budget=self.time_budget, t0=self.t0)
        self._write_outputs()
        if self.on_prediction is not None:
            for i in range(len(self.seen) - len(new), len(self.seen)):
                running = alc(out.timestamps[: i + 1], out.scores[: i + 1], time_budget=self.time_budget, t0=self.t0)
                self.on_prediction(i, out.timestamps[i], out.scores[i], running)
        return len(new)

    def _write_outputs(self, auto_refresh: bool = True) -> None:
        out = self.outcome
        save_learning_curve(self.png_path, out.timestamps, out.scores, time_budget=self.time_budget, t0=self.t0,
                            task_name=self.task)
        files.write_html(self.score_dir, auto_refresh=auto_refresh)
        self.write_scores()

    def write_scores(self) -> None:
        out = self.outcome
        files.write_scores(os.path.join(self.score_dir, "scores.txt"), score=out.alc,
                           duration=out.timestamps[-1] if out.timestamps else 0, timestamps=out.timestamps,
                           nauc_scores=out.scores, accuracy=out.accuracy)

    def run(self, *, poll: float = 1.0, grace: float = 5.0, start_timeout: float = 1800.0,
            alive: Callable[[], bool] | None = None, kill: Callable[[], None] | None = None) -> Outcome:
        """The official scoring loop: score until end.txt appears or start + T passes, then once more.

        Args:
            poll: seconds between checks (the kit: 1).
            grace: seconds between SIGTERM and SIGKILL when ingestion overruns.
            start_timeout: how long to wait for `start.txt` (the kit: 1800).
            alive: whether ingestion still runs (default: its pid from start.txt exists). A runner
                that owns the process passes its own check, which also ends the wait for a start
                that will never come.
            kill: how to stop an overrunning ingestion (default: SIGTERM, then SIGKILL, to its pid).
        """
        out = self.outcome
        if not self.wait_for_start(start_timeout, poll, alive):
            logger.error("ingestion did not start (no start.txt in %s)", self.prediction_dir)
            return out
        alive = alive or (lambda: _pid_alive(self.info.ingestion_pid))
        kill = kill or (lambda: _terminate(self.info.ingestion_pid, grace))
        end_path = os.path.join(self.prediction_dir, "end.txt")
        try:
            while time.time() < self.info.start_time + self.time_budget:
                if os.path.exists(end_path) or not alive():
                    break
                time.sleep(poll)
                self.score_new_predictions()
            else:
                if alive():
                    out.time_limit_exceeded = True
                    kill()
            self.score_new_predictions()
        except ScoringError as exc:
            logger.error("scoring failed: %s", exc)
        end = files.read_end(end_path)
        settle = time.time() + 5.0  # end.txt exists from the moment it is opened: let its writer finish
        while end is None and os.path.exists(end_path) and time.time() < settle:
            time.sleep(0.05)
            end = files.read_end(end_path)
        if end is not None:
            out.ingestion_finished = True
            out.ingestion_success = bool(end.get("ingestion_success"))
            if not out.ingestion_success:
                self.write_scores()  # a failed run still gets its partial ALC
        if self.seen:
            files.write_html(self.score_dir, auto_refresh=False)
        return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.score", description=__doc__.splitlines()[0])
    parser.add_argument("--solution_dir", required=True)
    parser.add_argument("--prediction_dir", required=True)
    parser.add_argument("--score_dir", required=True)
    parser.add_argument("--t0", type=float, default=60.0, help="time constant of the log time axis")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between checks (official: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s score: %(message)s")
    try:
        evaluator = Evaluator(args.solution_dir, args.prediction_dir, args.score_dir, t0=args.t0,
                              on_prediction=lambda i, t, s, a: logger.info(
                                  "prediction %d at %.1f s: NAUC %.4f, ALC so far %.4f", i, t, s, a))
    except (ScoringError, AutoDLDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = evaluator.run(poll=args.poll)
    logger.info("final ALC for %s: %.4f", evaluator.task, out.alc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
