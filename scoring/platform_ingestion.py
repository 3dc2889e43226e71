"""Ingestion as on the AutoDL platform, for a submission folder that must stand on its own.

    python -P scoring/platform_ingestion.py --dataset_dir D --output_dir P --code_dir C
                                            [--time_budget 1200] [--reader_root R] [--construct_only]

Run as a script (`-P`: its own folder is not put on the import path), in a fresh process whose
working directory is the submission folder. It does what the official ingestion does (protocol
§2: TensorFlow first, `Model(metadata)` under the 20-minute alarm, train -> test -> timestamp ->
write rounds, start.txt and end.txt in the kit's format), and it enforces the platform's package
set: an import hook refuses every top-level module that code inside the submission folder imports
unless it is the standard library's, one of `PLATFORM_PACKAGES`, or the submission's own. Imports
made by those packages themselves are theirs to make. Refused imports are also listed in
`<output_dir>/platform_report.json` (with the submission's modules and the files they came from),
so that a submission swallowing the ImportError still fails the check.

The datasets are read with this project's reader, loaded from `--reader_root` before the
submission is imported and then removed from `sys.modules` and the import path, so nothing of the
project outside the submission folder remains importable (the platform likewise hands the Model
objects of its own reader). This file imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import os
import random
import signal
import sys
import time
import traceback
from typing import Any

__all__ = ["PLATFORM_PACKAGES", "ImportGuard", "main"]

# What the AutoDL platform provides (top-level import names): TensorFlow, PyTorch, torchvision, NumPy and
# scikit-learn, and the dependencies they bring themselves that a submission may use (SciPy, Pillow, protobuf).
PLATFORM_PACKAGES = ("tensorflow", "torch", "torchvision", "numpy", "sklearn", "scipy", "PIL", "google")
INIT_TIME_LIMIT = 1200


class ImportGuard(importlib.abc.MetaPathFinder):
    """Refuse top-level imports made from files under `code_dir` outside the allowed set."""

    def __init__(self, code_dir: str, allowed: tuple[str, ...] = PLATFORM_PACKAGES):
        self.code_dir = os.path.realpath(code_dir) + os.sep
        self.allowed = set(allowed) | set(sys.stdlib_module_names) | {"__future__"}
        self.refused: list[dict[str, str]] = []

    def _importer(self) -> tuple[str, int] | None:
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith("<frozen") and "importlib" not in name and name != __file__:
                return name, frame.f_lineno
            frame = frame.f_back
        return None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        top = fullname.partition(".")[0]
        if top in self.allowed or fullname != top:
            return None
        own = os.path.exists(os.path.join(self.code_dir, top + ".py")) or \
            os.path.isdir(os.path.join(self.code_dir, top))
        importer = self._importer()
        if own or importer is None or not os.path.realpath(importer[0]).startswith(self.code_dir):
            return None
        where = f"{os.path.relpath(importer[0], self.code_dir)}:{importer[1]}"
        self.refused.append({"module": fullname, "imported_by": where})
        raise ImportError(f"No module named {fullname!r} on the AutoDL platform (imported by {where}; "
                          f"available: the standard library, {', '.join(PLATFORM_PACKAGES)})")


def _read_datasets(dataset_dir: str, reader_root: str) -> tuple[str, Any, Any]:
    """(task, train dataset, test dataset) with the project's reader, then forget the reader's modules."""
    found = [e for e in os.listdir(dataset_dir) if e.endswith(".data")]
    if len(found) != 1:
        raise ValueError(f"{dataset_dir}: expected exactly one '*.data' entry, found {len(found)}: {found}")
    sys.path.insert(0, reader_root)
    try:
        from metadata.reader import AutoDLDataset

        train = AutoDLDataset(os.path.join(dataset_dir, found[0], "train"))
        test = AutoDLDataset(os.path.join(dataset_dir, found[0], "test"))
    finally:
        sys.path.remove(reader_root)
        for name in [n for n in sys.modules if n == "metadata" or n.startswith("metadata.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
    return found[0][: -len(".data")], train, test


def _write_prediction(path: str, prediction: Any) -> None:
    tmp = os.path.join(os.path.dirname(path), f"temp_prediction_file_{random.randrange(10000)}")
    with open(tmp, "w") as f:
        for row in prediction:
            f.write(" ".join("{0:g}".format(float(v)) for v in row) + "\n")
    os.rename(tmp, path)


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("Model construction exceeded the 20-minute limit")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", help="required unless --import_only")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--code_dir", required=True)
    p.add_argument("--time_budget", type=float, default=1200)
    p.add_argument("--reader_root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--construct_only", action="store_true", help="stop after constructing the Model")
    p.add_argument("--import_only", action="store_true", help="only import model.py (no dataset needed)")
    args = p.parse_args(argv)
    if not args.dataset_dir and not args.import_only:
        p.error("--dataset_dir is required (unless --import_only)")
    import tensorflow  # noqa: F401  (the platform's ingestion imports TensorFlow before model.py)

    os.makedirs(args.output_dir, exist_ok=True)
    code_dir = os.path.abspath(args.code_dir)
    if args.import_only:
        task = d_train = d_test = expected = None
    else:
        task, d_train, d_test = _read_datasets(os.path.abspath(args.dataset_dir), os.path.abspath(args.reader_root))
        expected = (d_test.get_metadata().size(), d_test.get_metadata().get_output_size())
    guard = ImportGuard(code_dir)
    sys.meta_path.insert(0, guard)
    sys.path.extend([code_dir, os.path.join(code_dir, "AutoDL_sample_code_submission")])
    report: dict[str, Any] = {"task": task, "code_dir": code_dir, "error": None, "predictions": 0}
    model = None
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(INIT_TIME_LIMIT)
    try:
        spec = importlib.util.spec_from_file_location("model", os.path.join(code_dir, "model.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["model"] = module
        spec.loader.exec_module(module)
        model = module.Model if args.import_only else module.Model(d_train.get_metadata())
    except BaseException:  # noqa: BLE001 - the platform logs any failure here and goes on without a Model
        report["error"] = traceback.format_exc()
        traceback.print_exc()
    finally:
        signal.alarm(0)
    success = model is not None
    if model is not None and not (args.construct_only or args.import_only):
        start = time.time()
        start_path = os.path.join(args.output_dir, "start.txt")
        with open(start_path, "w") as f:
            f.write(f"ingestion_pid: {os.getpid()}\ntask_name: {task}\ntime_budget: {args.time_budget}\n"
                    f"start_time: {start}\n")
        train_ds, test_ds = d_train.get_dataset(), d_test.get_dataset()
        try:
            i = 0
            while not (hasattr(model, "done_training") and model.done_training):
                model.train(train_ds, remaining_time_budget=start + args.time_budget - time.time())
                prediction = model.test(test_ds, remaining_time_budget=start + args.time_budget - time.time())
                if prediction is None:
                    break
                if tuple(prediction.shape) != expected:
                    raise ValueError(f"prediction shape {tuple(prediction.shape)} should be {expected}")
                with open(start_path, "a") as f:
                    f.write(f"{i}: {time.time()}\n")
                _write_prediction(os.path.join(args.output_dir, f"{task}.predict_{i}"), prediction)
                i += 1
                report["predictions"] = i
                if start + args.time_budget - time.time() <= 0:
                    break
        except Exception:  # noqa: BLE001 - ends the run with ingestion_success 0, as the platform does
            success = False
            report["error"] = traceback.format_exc()
            traceback.print_exc()
        end = time.time()
        with open(os.path.join(args.output_dir, "end.txt"), "w") as f:
            f.write(f"ingestion_duration: {end - start}\ningestion_success: {int(success)}\nend_time: {end}\n")
    report["refused_imports"] = guard.refused
    report["modules"] = {name: getattr(m, "__file__", None) for name, m in sorted(sys.modules.items())
                         if getattr(m, "__file__", None) and os.path.realpath(m.__file__).startswith(guard.code_dir)}
    reader_root = os.path.realpath(args.reader_root) + os.sep
    here = os.path.realpath(__file__)
    report["outside_modules"] = {
        name: m.__file__ for name, m in sorted(sys.modules.items())
        if getattr(m, "__file__", None) and os.path.realpath(m.__file__).startswith(reader_root)
        and not os.path.realpath(m.__file__).startswith(guard.code_dir) and os.path.realpath(m.__file__) != here}
    with open(os.path.join(args.output_dir, "platform_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    if guard.refused:
        print(f"refused imports: {guard.refused}", file=sys.stderr)
    if report["outside_modules"]:
        print(f"modules imported from outside the submission folder: {report['outside_modules']}", file=sys.stderr)
    return 0 if success and not guard.refused and not report["outside_modules"] else 1


if __name__ == "__main__":
    sys.exit(main())
