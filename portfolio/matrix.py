"""The performance matrix: every configuration on every dataset, R repeats, as independent jobs.

    python -m portfolio.matrix --configs DIR --datasets DIR [DIR ...] --repeats R --budget S
                               --executor local:N|dask:ADDRESS --out matrix.csv [--weights-dir W]
                               [--objective module:function] [--max-samples N] [--probe NET:FILE@SIDE]
                               [--horizon T]

DIR holds configuration records (`*.json`, the name of each file is the column name), each with
its own run-time settings in `<name>.settings.json` when it has them (as `portfolio.tune --pipeline`
writes them and a bundle member carries them); the engine applies them as the Model does. Each job
runs the objective (default: anytime ALC on held-out train data) and appends one line to the
sidecar `<out>.runs.jsonl` as it finishes: dataset, config, repeat, status (ok | crash), ALC or
the error. Rerunning skips the jobs the sidecar already holds. The CSV has datasets as rows and
configurations as columns, each cell the mean ALC of the successful repeats; a cell where every
repeat crashed is left empty (a crash is never a score).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
import time
import traceback
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "run_job", "run_matrix", "read_labelled_csv", "read_matrix", "write_matrix", "main"]


@dataclass(frozen=True)
class Job:
    dataset: str        # dataset folder
    dataset_name: str
    config_name: str
    config: dict[str, Any]
    repeat: int
    budget: float
    weights_dir: str | None
    objective: str
    context: dict[str, Any] = field(default_factory=dict)  # more for the objective: max_samples, probe

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.dataset_name, self.config_name, self.repeat)


def run_job(job: Job) -> dict[str, Any]:
    """Run one cell repeat; never raises: a crash comes back as a record with its error."""
    import learner  # noqa: F401  (triton guard in fresh worker processes)
    from portfolio.objective import load_objective

    start = time.time()
    record = {"dataset": job.dataset_name, "config": job.config_name, "repeat": job.repeat, "budget": job.budget}
    try:
        objective = load_objective(job.objective)
        context = {"dataset": job.dataset, "dataset_name": job.dataset_name, "weights_dir": job.weights_dir,
                   "seed": job.repeat, "repeat": job.repeat, **job.context}
        config = {**job.config, "name": job.config_name}
        result = objective(config, job.budget, context)
        record.update(status="ok", alc=1.0 - float(result["loss"]))
    except Exception as exc:  # noqa: BLE001 - recorded as a crash, with its error
        record.update(status="crash", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["seconds"] = time.time() - start
    return record


def _read_sidecar(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _submit_all(executor_spec: str, jobs: list[Job]):
    kind, _, arg = executor_spec.partition(":")
    if kind == "local":
        import multiprocessing

        workers = int(arg or 1)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        futures = [pool.submit(run_job, job) for job in jobs]
        return pool, as_completed(futures), lambda f: f.result()
    if kind == "dask":
        from distributed import Client, as_completed as dask_completed

        client = Client(arg) if arg else Client()
        futures = client.map(run_job, jobs, pure=False)
        return client, dask_completed(futures), lambda f: f.result()
    raise ValueError(f"executor must be local:N or dask:ADDRESS, got {executor_spec!r}")


SETTINGS_SUFFIX = ".settings.json"


def _load_config(path: str) -> dict[str, Any]:
    """A configuration record as search-space values, with its settings file's values under `settings`
    (checked here: a bad file is an error naming it, before any job runs)."""
    from learner.config import TrainConfig
    from portfolio.space import from_train_config
    from runtime.settings import RuntimeSettings, member_settings, read_settings_file

    values = from_train_config(TrainConfig.load(path))
    settings_path = path[:-5] + SETTINGS_SUFFIX
    if os.path.exists(settings_path):
        overrides = read_settings_file(settings_path)
        member_settings(RuntimeSettings(), overrides, settings_path)
        values["settings"] = overrides
    return values


def run_matrix(configs_dir: str, dataset_dirs: list[str], *, repeats: int, budget: float, executor: str, out: str,
               weights_dir: str | None = None, objective: str = "portfolio.objective:alc_objective",
               progress: bool = True, context: dict[str, Any] | None = None) -> dict[str, dict[str, float | None]]:
    """Run the jobs the sidecar does not hold yet and write the matrix; `context` goes to every objective call
    (`max_samples`: a lower fidelity; `probe`: the bundle's probe network)."""
    from tqdm import tqdm

    from metadata.check import find_dataset

    config_paths = sorted(p for p in glob.glob(os.path.join(configs_dir, "*.json"))
                          if not p.endswith(SETTINGS_SUFFIX))
    if not config_paths:
        raise ValueError(f"{configs_dir}: no configuration records (*.json)")
    configs = {os.path.basename(p)[:-5]: _load_config(p) for p in config_paths}
    datasets = {find_dataset(d)[0]: os.path.abspath(d) for d in dataset_dirs}
    sidecar = out + ".runs.jsonl"
    done = {(r["dataset"], r["config"], r["repeat"]) for r in _read_sidecar(sidecar)}
    jobs = [Job(path, name, cname, values, r, budget, weights_dir and os.path.abspath(weights_dir), objective,
                dict(context or {}))
            for name, path in datasets.items() for cname, values in configs.items() for r in range(repeats)]
    todo = [j for j in jobs if j.key not in done]
    if todo:
        handle, completed, result_of = _submit_all(executor, todo)
        try:
            with open(sidecar, "a") as log, tqdm(total=len(todo), desc="matrix", unit="job", disable=not progress) as bar:
                for future in completed:
                    record = result_of(future)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.update(1)
                    if record["status"] == "crash":
                        bar.write(f"[matrix] crash: {record['dataset']} x {record['config']} "
                                  f"#{record['repeat']}: {record['error']}")
        finally:
            handle.shutdown() if hasattr(handle, "shutdown") else handle.close()
    records = [r for r in _read_sidecar(sidecar) if r["dataset"] in datasets and r["config"] in configs]
    matrix = aggregate(records, list(datasets), list(configs))
    write_matrix(out, matrix)
    return matrix


def aggregate(records: list[dict[str, Any]], datasets: list[str], configs: list[str]
              ) -> dict[str, dict[str, float | None]]:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            values[(r["dataset"], r["config"])].append(r["alc"])
    return {d: {c: (sum(values[(d, c)]) / len(values[(d, c)]) if values[(d, c)] else None) for c in configs}
            for d in datasets}


def write_matrix(path: str, matrix: dict[str, dict[str, float | None]]) -> None:
    configs = list(next(iter(matrix.values())))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", *configs])
        for dataset, row in matrix.items():
            writer.writerow([dataset, *("" if row[c] is None else f"{row[c]:.6f}" for c in configs)])


def read_labelled_csv(path: str, *, empty_cells: bool = False) -> tuple[list[str], dict[str, list[float | None]]]:
    """(header, {first-column label: numbers}) of a CSV; errors name the file and line.

    With `empty_cells`, an empty cell reads as None (a crash in a matrix)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(rows) < 2 or len(rows[0]) < 2:
        raise ValueError(f"{path}: needs a header and at least one row, with a label column and a value column")
    header = rows[0][1:]
    table = {}
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header) + 1:
            raise ValueError(f"{path}: line {i} has {len(row)} cells, expected {len(header) + 1}")
        try:
            table[row[0]] = [None if empty_cells and not v.strip() else float(v) for v in row[1:]]
        except ValueError as exc:
            raise ValueError(f"{path}: line {i}: {exc}") from exc
    return header, table


def read_matrix(path: str) -> dict[str, dict[str, float | None]]:
    """A matrix CSV (first column: dataset names; header: configuration names; empty cell: crash)."""
    header, table = read_labelled_csv(path, empty_cells=True)
    return {dataset: dict(zip(header, values)) for dataset, values in table.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.matrix", description=__doc__.splitlines()[0])
    p.add_argument("--configs", required=True)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--budget", type=float, required=True, help="seconds per run")
    p.add_argument("--executor", default="local:1")
    p.add_argument("--out", required=True)
    p.add_argument("--weights-dir")
    p.add_argument("--objective", default="portfolio.objective:alc_objective")
    p.add_argument("--max-samples", type=int, help="train samples per run (a stratified subset: lower fidelity)")
    p.add_argument("--horizon", type=float, help="each run is the first --budget seconds of a run of this many "
                                                 "seconds (its ALC: T = horizon, the last answer held)")
    p.add_argument("--probe", help="the bundle's probe, BACKBONE[:WEIGHTS_FILE]@RESOLUTION (file in --weights-dir); "
                                   "default: each configuration's own network")
    args = p.parse_args(argv)
    try:
        from portfolio.objective import run_context

        context = run_context(max_samples=args.max_samples, probe=args.probe, weights_dir=args.weights_dir,
                              horizon=args.horizon)
        matrix = run_matrix(args.configs, args.datasets, repeats=args.repeats, budget=args.budget,
                            executor=args.executor, out=args.out, weights_dir=args.weights_dir,
                            objective=args.objective, context=context)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    crashed = sum(v is None for row in matrix.values() for v in row.values())
    print(f"{args.out}: {len(matrix)} datasets x {len(next(iter(matrix.values())))} configurations, "
          f"{crashed} cells without a successful run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
