"""BOHB per known dataset (hpbandster), on local worker processes or workers on other machines.

    python -m portfolio.tune --dataset DIR --out RUN_DIR [--weights-dir W] [--backbones a,b] [--allow-random]
        [--resolutions 64,96,128] [--video] [--pipeline] [--min-budget 10] [--max-budget 90] [--eta 3] [--iterations 4]
        [--workers N] [--host 127.0.0.1] [--previous-run DIR] [--objective module:function] [--max-samples N]
        [--probe NET:FILE@SIDE] [--horizon T]
    python -m portfolio.tune --worker --run-id ID --shared-dir DIR       # join a running master
    python -m portfolio.tune --space selector:mlp_moments --store STORE --out RUN_DIR [...]  # tune a selector

The master writes the run's context (dataset, space, objective) and the name server's
credentials to the shared folder (RUN_DIR unless --shared-dir); `--workers N` starts N local
worker processes; more can join from any machine that sees the shared folder (see the README).
Budgets are seconds of anytime training; the objective is 1 − ALC on held-out train data. Every
result is logged as it arrives (`results.json`, `configs.json`, hpbandster's format, so a run can
warm-start another with --previous-run); a crashing trial is written to `crashes.jsonl` with its
error and reported to BOHB as failed (never as a score). The incumbent is written as a
configuration record `<dataset>.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import portfolio._pyro  # noqa: F401  (Pyro4 settings before hpbandster)
from portfolio.objective import load_objective, run_context
from portfolio.space import (RUNTIME_PREFIX, available_models, build_space, non_default, selector_space,
                             to_runtime_settings, to_selector_params, to_train_config)

__all__ = ["TuneResult", "run_master", "run_worker", "main"]

logger = logging.getLogger("portfolio.tune")
REPO = Path(__file__).resolve().parents[1]
CONTEXT = "context.json"


@dataclass
class TuneResult:
    incumbent_path: str | None
    incumbent: dict[str, Any] | None
    runs: int
    crashes: int
    model_based_picks: int


def _worker_class():
    from hpbandster.core.worker import Worker

    class ObjectiveWorker(Worker):
        def __init__(self, context: dict[str, Any], crash_log: str, **kwargs: Any):
            super().__init__(**kwargs)
            self.context = context
            self.objective = load_objective(context["objective"])
            self.crash_log = crash_log
            self.lock = threading.Lock()

        def compute(self, config: dict[str, Any], budget: float, **kwargs: Any) -> dict[str, Any]:
            try:
                result = self.objective(config, budget, self.context)
            except Exception as exc:
                record = {"time": time.time(), "config_id": list(kwargs.get("config_id", ())), "budget": budget,
                          "config": config, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()}
                with self.lock, open(self.crash_log, "a") as f:
                    f.write(json.dumps(record, default=str) + "\n")
                logger.error("[tune] trial crashed (budget %g): %s", budget, record["error"])
                raise  # hpbandster records the trial as failed
            return {"loss": float(result["loss"]), "info": result.get("info", {})}

    return ObjectiveWorker


def run_worker(run_id: str, shared_dir: str, *, host: str | None = None) -> None:
    """Join a running master through the credentials in `shared_dir`; return when it shuts down."""
    with open(os.path.join(shared_dir, CONTEXT)) as f:
        context = json.load(f)
    worker = _worker_class()(context, os.path.join(shared_dir, "crashes.jsonl"), run_id=run_id, host=host)
    worker.load_nameserver_credentials(working_directory=shared_dir)
    worker.run(background=False)


def _plain(value: Any) -> Any:
    """Numpy scalars (and containers of them) as plain Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


class _ProgressLogger:
    """hpbandster's JSON result logger plus one printed line per result."""

    def __init__(self, directory: str, overwrite: bool):
        import hpbandster.core.result as hpres

        self.inner = hpres.json_result_logger(directory=directory, overwrite=overwrite)
        self.count = 0
        self.best = float("inf")

    def new_config(self, config_id: Any, config: dict[str, Any], config_info: dict[str, Any]) -> None:
        # ConfigSpace 1.x hands numpy scalars for integer categoricals; the JSON logger cannot write them.
        self.inner.new_config(config_id, _plain(config), _plain(config_info))

    def __call__(self, job: Any) -> None:
        self.inner(job)
        self.count += 1
        loss = job.result["loss"] if job.result else None
        if loss is not None:
            self.best = min(self.best, loss)
        status = "CRASH" if loss is None else f"ALC {1 - loss:.4f}"
        print(f"[tune] result {self.count}: config {job.id} budget {job.kwargs['budget']:g}s {status} "
              f"(best ALC {1 - self.best:.4f})", flush=True)


def _successful_history(run_dir: str) -> Any:
    """An earlier run's results for warm-starting, without its failed trials.

    hpbandster's warm start cannot digest a failed trial (it calls `np.isfinite(None)`); failed
    trials carry nothing for BOHB's density model, and they stay recorded in the earlier run.
    """
    import hpbandster.core.result as hpres

    if not os.path.exists(os.path.join(run_dir, "results.json")):
        raise ValueError(f"{run_dir}: no results.json to warm-start from")
    history = hpres.logged_results_to_HBS_result(run_dir)
    for datum in history.data.values():
        for budget in [b for b, r in datum.results.items() if r is None or r.get("loss") is None]:
            datum.results.pop(budget)
            datum.time_stamps.pop(budget, None)
            datum.exceptions.pop(budget, None)
    return history


def run_master(args: argparse.Namespace) -> TuneResult:
    import hpbandster.core.nameserver as hpns
    from hpbandster.optimizers import BOHB

    from metadata.check import find_dataset

    selector_name = args.space.partition(":")[2] if args.space.startswith("selector:") else None
    if selector_name:
        if not args.store:
            raise ValueError("--space selector:NAME needs --store")
        dataset_name = f"selector-{selector_name}"
    else:
        if not args.dataset:
            raise ValueError("--dataset is required (or --space selector:NAME with --store)")
        dataset_name, _ = find_dataset(args.dataset)
    out = Path(args.out)
    if (out / "results.json").exists():
        raise FileExistsError(f"{out} already holds a BOHB run; choose a new --out "
                              f"(and pass --previous-run {out} to warm-start from it)")
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared_dir or out)
    shared.mkdir(parents=True, exist_ok=True)
    if selector_name:
        space = selector_space(selector_name, seed=args.seed)
        objective = args.objective or "portfolio.objective:selector_objective"
        context = {"store": os.path.abspath(args.store), "selector": selector_name, "seed": args.seed,
                   "objective": objective}
    else:
        models = available_models(args.weights_dir, args.backbones.split(",") if args.backbones else None,
                                  args.allow_random)
        resolutions = tuple(int(r) for r in args.resolutions.split(","))
        space = build_space(models, resolutions=resolutions, video=args.video, pipeline=args.pipeline, seed=args.seed)
        context = {"dataset": os.path.abspath(args.dataset),
                   "weights_dir": args.weights_dir and os.path.abspath(args.weights_dir), "seed": args.seed,
                   "objective": args.objective or "portfolio.objective:alc_objective"}
        if args.horizon and args.horizon < args.max_budget:
            raise ValueError(f"--horizon {args.horizon:g} is below --max-budget {args.max_budget:g}")
        context.update(run_context(max_samples=args.max_samples, probe=args.probe, weights_dir=args.weights_dir,
                                   horizon=args.horizon))
    space.to_json(out / "configspace.json")
    (shared / CONTEXT).write_text(json.dumps(context, indent=2))
    run_id = args.run_id or f"{dataset_name}-{os.getpid()}"
    ns = hpns.NameServer(run_id=run_id, host=args.host, port=0, working_directory=str(shared))
    ns_host, ns_port = ns.start()
    processes: list[subprocess.Popen] = []
    env = {**os.environ, **portfolio._pyro.PYRO_ENV,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        if args.workers == 0:
            worker = _worker_class()(context, str(shared / "crashes.jsonl"), run_id=run_id, host=args.host,
                                     nameserver=ns_host, nameserver_port=ns_port)
            worker.run(background=True)
        for i in range(args.workers):
            log = open(out / f"worker-{i}.log", "w")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "portfolio.tune", "--worker", "--run-id", run_id, "--shared-dir", str(shared),
                 "--host", args.host], stdout=log, stderr=subprocess.STDOUT, env=env))
        previous = _successful_history(args.previous_run) if args.previous_run else None
        bohb = BOHB(configspace=space, run_id=run_id, nameserver=ns_host, nameserver_port=ns_port,
                    min_budget=args.min_budget, max_budget=args.max_budget, eta=args.eta,
                    result_logger=_ProgressLogger(str(out), overwrite=True), previous_result=previous)
        result = bohb.run(n_iterations=args.iterations, min_n_workers=max(1, args.workers))
        bohb.shutdown(shutdown_workers=True)
    finally:
        ns.shutdown()
        for p in processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    runs = result.get_all_runs()
    id2config = result.get_id2config_mapping()
    picks = sum(1 for v in id2config.values() if v["config_info"].get("model_based_pick"))
    crashes = sum(1 for r in runs if r.loss is None)
    incumbent_id = result.get_incumbent_id()
    incumbent_path = incumbent = None
    if incumbent_id is not None:
        incumbent = _plain(id2config[incumbent_id]["config"])
        incumbent_path = str(out / f"{dataset_name}.json")
        if selector_name:
            params = to_selector_params(incumbent)
            Path(incumbent_path).write_text(json.dumps(
                {"selector": selector_name, "params": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in params.items()}}, indent=2) + "\n")
        else:
            to_train_config(incumbent, name=dataset_name).save(incumbent_path)
            knobs = {k: v for k, v in incumbent.items() if k.startswith(RUNTIME_PREFIX)}
            if knobs:  # a pipeline space: the incumbent's run-time settings beside its configuration
                changed = non_default(to_runtime_settings(knobs))
                Path(out / f"{dataset_name}.settings.json").write_text(json.dumps(
                    {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}, indent=2) + "\n")
    return TuneResult(incumbent_path, incumbent, len(runs), crashes, picks)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m portfolio.tune", description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="run as a worker of a running master")
    p.add_argument("--run-id")
    p.add_argument("--shared-dir")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (a cluster address for remote workers)")
    p.add_argument("--dataset")
    p.add_argument("--out")
    p.add_argument("--weights-dir")
    p.add_argument("--backbones", help="comma-separated backbone names (default: all with weights)")
    p.add_argument("--allow-random", action="store_true", help="also tune randomly initialised backbones")
    p.add_argument("--resolutions", default="64,96,128")
    p.add_argument("--video", action="store_true", help="also tune frames per clip and frame sampling")
    p.add_argument("--pipeline", action="store_true",
                   help="also tune the run-time engine's knobs (the incumbent's go to <dataset>.settings.json)")
    p.add_argument("--min-budget", type=float, default=10.0)
    p.add_argument("--max-budget", type=float, default=90.0)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--workers", type=int, default=1, help="local worker processes (0: one in this process)")
    p.add_argument("--previous-run", help="warm-start from an earlier run's folder")
    p.add_argument("--objective", help="module:function (default: the learner's ALC, or the selector's accuracy)")
    p.add_argument("--space", default="learner", help="learner, or selector:NAME to tune a fingerprint selector")
    p.add_argument("--store", help="fingerprint store (with --space selector:NAME)")
    p.add_argument("--max-samples", type=int, help="train samples decoded per trial")
    p.add_argument("--probe", help="the bundle's probe, BACKBONE[:WEIGHTS_FILE]@RESOLUTION (file in --weights-dir); "
                                   "default: each configuration's own network")
    p.add_argument("--horizon", type=float, help="every budget is the first seconds of one run of this many "
                                                 "seconds (fidelities are prefixes of the same learning curve)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker:
        if not (args.run_id and args.shared_dir):
            print("error: --worker needs --run-id and --shared-dir", file=sys.stderr)
            return 2
        run_worker(args.run_id, args.shared_dir, host=args.host)
        return 0
    if not args.out:
        print("error: --out is required", file=sys.stderr)
        return 2
    try:
        result = run_master(args)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[tune] {result.runs} runs, {result.crashes} crashed, {result.model_based_picks} model-based picks")
    if result.incumbent_path:
        print(f"[tune] incumbent: {result.incumbent_path}")
        return 0
    print("[tune] no successful trial: no incumbent", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
