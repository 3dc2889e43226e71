"""The ingestion program: runs a submission's `Model` on a dataset, as the platform does.

    python -m scoring.ingest --dataset_dir D --output_dir P --code_dir C [--score_dir S]
                             [--ingestion_program_dir I] [--time_budget 1200]

Arguments and behaviour follow the official `ingestion.py` (protocol §2): the constructor gets 20
minutes outside the budget, then train -> test -> timestamp -> write rounds until `done_training`,
a `None` from `test`, an exhausted budget or an exception; `start.txt` and `end.txt` as the kit
writes them. The budget itself is enforced by the scoring side. A model exception is logged with
its traceback (stderr) and ends the run with `ingestion_success: 0`.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import signal
import sys
import time
from typing import Any

__all__ = ["BadPredictionShapeError", "ModelApiError", "run_ingestion", "main"]

logger = logging.getLogger("ingestion")

INIT_TIME_LIMIT = 1200  # seconds the constructor may take, outside the budget


class BadPredictionShapeError(Exception):
    pass


class ModelApiError(Exception):
    pass


class _InitTimeout(Exception):
    pass


def _find_dataset(dataset_dir: str) -> str:
    found = [os.path.basename(p) for p in glob.glob(os.path.join(dataset_dir, "*.data"))]
    if len(found) != 1:
        raise ValueError(f"{dataset_dir}: expected exactly one '*.data' entry, found {len(found)}: {found}")
    return found[0]


def _import_model(ingestion_program_dir: str | None, code_dir: str) -> Any:
    """`from model import Model` with the platform's sys.path additions, in its order.

    The file is resolved explicitly in that order, so a `model.py` elsewhere on this process's
    path (this project's own, when scoring another submission) cannot be picked up instead.
    """
    import importlib.util

    folders = [f for f in (ingestion_program_dir, code_dir, os.path.join(code_dir, "AutoDL_sample_code_submission"))
               if f]
    sys.path.extend(folders)
    for folder in folders:
        candidate = os.path.join(folder, "model.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("model", candidate)
            module = importlib.util.module_from_spec(spec)
            sys.modules["model"] = module
            spec.loader.exec_module(module)
            return module.Model
    raise ModelApiError(f"no model.py in {code_dir} (nor in its AutoDL_sample_code_submission/)")


def run_ingestion(dataset_dir: str, output_dir: str, code_dir: str, *, score_dir: str | None = None,
                  ingestion_program_dir: str | None = None, time_budget: float | int = 1200) -> bool:
    """One ingestion run; returns `ingestion_success`."""
    from metadata.reader import AutoDLDataset

    os.makedirs(output_dir, exist_ok=True)
    basename = _find_dataset(dataset_dir)
    task = basename[: -len(".data")]
    d_train = AutoDLDataset(os.path.join(dataset_dir, basename, "train"))
    d_test = AutoDLDataset(os.path.join(dataset_dir, basename, "test"))
    expected_shape = (d_test.get_metadata().size(), d_test.get_metadata().get_output_size())
    train_ds, test_ds = d_train.get_dataset(), d_test.get_dataset()

    success = True
    model = None
    previous = signal.signal(signal.SIGALRM, _raise_init_timeout)
    signal.alarm(INIT_TIME_LIMIT)
    try:
        Model = _import_model(ingestion_program_dir, code_dir)
        model = Model(d_train.get_metadata())
    except _InitTimeout:
        logger.error("Model construction exceeded %d s; moving to the train/predict phase", INIT_TIME_LIMIT)
    except Exception:  # noqa: BLE001 - the platform catches everything here too
        logger.exception("failed to import or construct the Model")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    from scoring import files

    start = time.time()
    start_path = os.path.join(output_dir, "start.txt")
    files.write_start(start_path, pid=os.getpid(), task_name=task, time_budget=time_budget, start_time=start)
    budget = float(time_budget)
    try:
        if model is None:
            raise NameError("Model was not constructed")
        if not (hasattr(model, "train") and hasattr(model, "test")):
            raise ModelApiError("the Model must have `train` and `test` methods")
        use_done_training = hasattr(model, "done_training")
        if not use_done_training:
            logger.warning("the Model has no `done_training` attribute: running until the budget is used")
        i = 0
        while not (use_done_training and model.done_training):
            model.train(train_ds, remaining_time_budget=start + budget - time.time())
            prediction = model.test(test_ds, remaining_time_budget=start + budget - time.time())
            if prediction is None:
                break
            if tuple(prediction.shape) != expected_shape:
                raise BadPredictionShapeError(f"prediction shape {tuple(prediction.shape)} should be {expected_shape}")
            files.append_timestamp(start_path, i, time.time())
            files.write_prediction(os.path.join(output_dir, f"{task}.predict_{i}"), prediction)
            logger.info("prediction %d written at %.2f s", i, time.time() - start)
            i += 1
            if start + budget - time.time() <= 0:
                break
    except Exception:  # noqa: BLE001
        success = False
        logger.exception("the Model failed")
    end = time.time()
    files.write_end(os.path.join(output_dir, "end.txt"), duration=end - start, success=success, end_time=end)
    if score_dir:
        os.makedirs(score_dir, exist_ok=True)
        shutil.copytree(output_dir, score_dir, dirs_exist_ok=True)
    return success


def _raise_init_timeout(signum: int, frame: object) -> None:
    raise _InitTimeout()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ingestion_program_dir", default=None)
    parser.add_argument("--code_dir", required=True)
    parser.add_argument("--score_dir", default=None)
    parser.add_argument("--time_budget", type=float, default=1200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s ingestion: %(message)s")
    try:
        ok = run_ingestion(args.dataset_dir, args.output_dir, args.code_dir, score_dir=args.score_dir,
                           ingestion_program_dir=args.ingestion_program_dir, time_budget=args.time_budget)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
