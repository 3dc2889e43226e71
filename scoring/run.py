"""Local runner: ingestion in its own process, scoring beside it, as on the platform.

    python -m scoring.run --dataset-dir D --code-dir C --output-dir O [--time-budget 1200] [--t0 60]
                          [--overwrite] [--platform]

D is a dataset folder (`<name>.data/` plus `<name>.solution`), C holds the submission's
`model.py`. Writes O/predictions (ingestion output: start.txt, <task>.predict_*, end.txt),
O/scores (scores.txt, learning-curve-<task>.png, detailed_results.html) and O/ingestion.log.
Prints one line per prediction and a summary.

With --platform, ingestion is `scoring/platform_ingestion.py`: the submission folder stands alone
(its working directory, nothing of this project on the import path) and every import outside the
platform's packages is refused, as on the AutoDL platform (O/predictions/platform_report.json lists
what was refused and where each of the submission's modules came from).

Exit status: 0 the run finished normally; 1 the model failed (its traceback is in ingestion.log;
the partial ALC is still scored); 3 ingestion overran the budget and was stopped (predictions made
so far count); 4 ingestion never started; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from metadata.errors import AutoDLDataError
from scoring.metrics import ScoringError
from scoring.score import Evaluator, Outcome, read_scorable_solution, task_name_of

__all__ = ["RunResult", "run_local", "main"]

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_MODEL_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_NOT_STARTED = 0, 1, 2, 3, 4


@dataclass
class RunResult:
    outcome: Outcome
    task: str
    png: str
    scores: str
    log: str
    exit_code: int


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    produced = ("predictions", "scores", "ingestion.log")
    existing = [p for p in produced if (output_dir / p).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir}: already holds a run ({', '.join(existing)}); pass --overwrite "
                              "to replace it, so stale predictions never mix in")
    for p in existing:
        target = output_dir / p
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)


def run_local(dataset_dir: str, code_dir: str, output_dir: str, *, time_budget: float = 1200, t0: float = 60.0,
              overwrite: bool = False, poll: float = 0.5, grace: float = 5.0, verbose: bool = True,
              platform: bool = False) -> RunResult:
    """Run ingestion and scoring on one dataset; see the module docstring for the layout."""
    dataset_dir, code_dir = os.path.abspath(dataset_dir), os.path.abspath(code_dir)
    if not os.path.isfile(os.path.join(code_dir, "model.py")):
        raise FileNotFoundError(f"{code_dir}: no model.py (the code dir must hold the submission's model.py)")
    task, solution_path = task_name_of(dataset_dir)
    read_scorable_solution(solution_path)  # before anything is started or replaced
    if not os.path.isdir(os.path.join(dataset_dir, f"{task}.data")):
        raise ScoringError(f"{dataset_dir}: the solution is {task}.solution but there is no {task}.data folder")
    out = Path(output_dir).resolve()
    _prepare_output(out, overwrite)
    prediction_dir, score_dir, log_path = out / "predictions", out / "scores", out / "ingestion.log"
    prediction_dir.mkdir()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if platform:
        env.pop("PYTHONPATH", None)
        command = [sys.executable, "-P", str(REPO / "scoring" / "platform_ingestion.py"), "--reader_root", str(REPO)]
        cwd = code_dir
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        command = [sys.executable, "-m", "scoring.ingest"]
        cwd = str(out)
    command += ["--dataset_dir", dataset_dir, "--output_dir", str(prediction_dir), "--code_dir", code_dir,
                "--time_budget", str(time_budget)]
    log = open(log_path, "w")
    # Own session: the whole process group (data loader workers included) can be stopped at T.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                               start_new_session=True)

    def report(i: int, elapsed: float, score: float, running_alc: float) -> None:
        if verbose:
            print(f"[score] prediction {i}: {elapsed:8.2f} s  NAUC {score:.4f}  ALC so far {running_alc:.4f}",
                  flush=True)

    def kill() -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    try:
        evaluator = Evaluator(dataset_dir, str(prediction_dir), str(score_dir), t0=t0, on_prediction=report)
        outcome = evaluator.run(poll=poll, grace=grace, alive=lambda: process.poll() is None, kill=kill)
        if process.poll() is None and not outcome.time_limit_exceeded:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill()
    finally:
        if process.poll() is None:
            kill()
        log.close()
    if outcome.time_limit_exceeded:
        code = EXIT_TIMEOUT
    elif not outcome.started:
        code = EXIT_NOT_STARTED
    elif not outcome.ingestion_success or outcome.error:
        code = EXIT_MODEL_FAILED
    else:
        code = EXIT_OK
    if (prediction_dir / "start.txt").exists():
        shutil.copy(prediction_dir / "start.txt", score_dir)
    return RunResult(outcome=outcome, task=task, png=evaluator.png_path, scores=str(score_dir / "scores.txt"),
                     log=str(log_path), exit_code=code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.run", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--time-budget", type=float, default=1200.0)
    parser.add_argument("--t0", type=float, default=60.0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--platform", action="store_true",
                        help="ingest as the platform does: the code dir alone, only the platform's packages")
    args = parser.parse_args(argv)
    started = time.time()
    try:
        result = run_local(args.dataset_dir, args.code_dir, args.output_dir, time_budget=args.time_budget,
                           t0=args.t0, overwrite=args.overwrite, platform=args.platform)
    except (FileExistsError, FileNotFoundError, ScoringError, AutoDLDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    o = result.outcome
    status = {EXIT_OK: "finished", EXIT_MODEL_FAILED: f"FAILED (model error, see {result.log})",
              EXIT_TIMEOUT: "stopped at the time budget", EXIT_NOT_STARTED: f"ingestion never started (see {result.log})"}
    print(f"task {result.task}: {status[result.exit_code]} after {time.time() - started:.1f} s")
    print(f"predictions: {len(o.scores)}; first at "
          f"{'-' if o.first_prediction_time is None else f'{o.first_prediction_time:.2f} s'}; "
          f"final NAUC {o.scores[-1] if o.scores else float('nan'):.4f}")
    print(f"ALC: {o.alc:.4f}  (T = {args.time_budget:g} s, t0 = {args.t0:g} s)")
    if o.scores:
        print(f"learning curve: {result.png}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
