"""The Model on datasets unlike the pool's: does it answer early, stay within the budget and never crash?

    python benchmarks/edge_cases.py [--cases ml20,k200,...] [--time-budget 60 --t0 3] [--out runs/edge]
                                    [--bundle bundle] [--settings FILE]

Writes small synthetic AutoDL datasets (deterministic, seeded per case; class-dependent brightness plus noise, so
there is something to learn) for shapes the pool lacks: many labels per sample, many classes with one or two
samples each, 200 classes, large images, variable sizes, a handful of samples, grayscale and long clips, a 95/5
class imbalance, a 10,000-image test set, a 50,000-image training set. Each runs through the local runner
(`scoring.run_local`); the table gives the runner's status (finished, stopped at the budget = an overrun, failed),
the number of predictions, the first one's time, the final NAUC and the ALC. Not a score to compare with other
datasets: a check that the flow holds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metadata.convert import convert_arrays, convert_image_folders  # noqa: E402
from scoring.run import EXIT_MODEL_FAILED, EXIT_OK, EXIT_TIMEOUT, run_local  # noqa: E402

STATUS = {EXIT_OK: "finished", EXIT_TIMEOUT: "stopped at the budget", EXIT_MODEL_FAILED: "failed"}


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """uint8 noise brightened by a class-dependent amount."""
    x = rng.integers(0, 120, size=(len(labels), *shape), dtype=np.uint8)
    return x + ((labels * 37) % 128).astype(np.uint8).reshape(-1, *([1] * len(shape)))


def _arrays(n_train: int, n_test: int, shape: tuple[int, ...], k: int, *, p_positive: float | None = None,
            balanced: bool = False) -> Callable[[str, np.random.Generator], None]:
    def write(out: str, rng: np.random.Generator) -> None:
        if p_positive is not None:  # binary with this share of positives (at least one in the test set)
            ytr = (rng.random(n_train) < p_positive).astype(int)
            yte = (rng.random(n_test) < p_positive).astype(int)
            yte[0] = 1
        elif balanced:
            ytr, yte = rng.permutation(np.arange(n_train) % k), np.arange(n_test) % k
        else:
            ytr, yte = rng.integers(0, k, n_train), rng.integers(0, k, n_test)
        convert_arrays(_images(rng, ytr, shape, k), ytr, _images(rng, yte, shape, k), yte, out,
                       name=Path(out).name, output_dim=k, progress=False, overwrite=True)
    return write


def _multilabel(out: str, rng: np.random.Generator) -> None:
    k = 20
    ytr, yte = ((rng.random((n, k)) < 0.15).astype(np.int64) for n in (300, 100))
    weights = (np.arange(k) % 7 * 7.0)

    def images(y: np.ndarray) -> np.ndarray:
        x = rng.integers(0, 100, size=(len(y), 48, 48, 3)).astype(np.float32) + (y @ weights).reshape(-1, 1, 1, 1)
        return np.clip(x, 0, 255).astype(np.uint8)
    convert_arrays(images(ytr), ytr, images(yte), yte, out, name=Path(out).name, output_dim=k, progress=False,
                   overwrite=True)


def _variable_sizes(out: str, rng: np.random.Generator) -> None:
    from PIL import Image
    src = Path(out + "-src")
    for c in range(3):
        (src / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(40):
            h, w = rng.integers(30, 400, 2)
            pixels = np.clip(rng.integers(0, 120, (h, w, 3)) + c * 60, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(src / f"c{c}" / f"{i}.png")
    convert_image_folders(str(src), out, name=Path(out).name, progress=False, overwrite=True)


CASES: dict[str, tuple[str, Callable[[str, np.random.Generator], None]]] = {
    "ml20": ("multilabel, 20 labels, 300 train, 48 px", _multilabel),
    "many_classes": ("100 classes, 150 train (1-2 per class, some absent), 32 px", _arrays(150, 200, (32, 32, 3), 100)),
    "k200": ("200 classes, 3,000 train, 1,000 test, 32 px", _arrays(3000, 1000, (32, 32, 3), 200, balanced=True)),
    "bigimg": ("120 train images of 700x900 px, 4 classes", _arrays(120, 40, (700, 900, 3), 4)),
    "varsize": ("3 classes, sizes 30-400 px varying", _variable_sizes),
    "tiny": ("12 train samples, 2 classes", _arrays(12, 8, (40, 40, 3), 2, balanced=True)),
    "vid_gray": ("grayscale clips, 16 frames of 40 px, 80 train", _arrays(80, 30, (16, 40, 40, 1), 5)),
    "longvid": ("clips of 32 frames of 64 px, 300 train", _arrays(300, 100, (32, 64, 64, 3), 6)),
    "kraut": ("grayscale clips of 181 frames of 120x160 px, 500 train, 250 test, 4 classes",
              _arrays(500, 250, (181, 120, 160, 1), 4)),
    "imbalanced": ("binary, 5 % positives, 400 train", _arrays(400, 100, (64, 64, 3), 2, p_positive=0.05)),
    "bigtest": ("2,000 train, 10,000 test, 64 px, 10 classes", _arrays(2000, 10000, (64, 64, 3), 10)),
    "bigtrain": ("50,000 train, 2,000 test, 32 px, 10 classes", _arrays(50000, 2000, (32, 32, 3), 10)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--time-budget", type=float, default=60.0)
    parser.add_argument("--t0", type=float, default=3.0)
    parser.add_argument("--out", default=str(REPO / "runs" / "edge"))
    parser.add_argument("--bundle", help="AUTODL_BUNDLE for the Model (default: the repository's bundle/)")
    parser.add_argument("--settings", help="AUTODL_SETTINGS for the Model")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    for name, value in (("AUTODL_BUNDLE", args.bundle), ("AUTODL_SETTINGS", args.settings)):
        if value:
            os.environ[name] = os.path.abspath(value)
    out = Path(args.out)
    lines = [f"edge cases: T = {args.time_budget:g} s, t0 = {args.t0:g} s", "",
             "| case | what | status | predictions | first (s) | final NAUC | ALC |", "|---|---|---|---|---|---|---|"]
    for name in cases:
        what, write = CASES[name]
        data = out / "data" / name
        if not data.is_dir():  # seeded by the case's place in CASES: the same data whichever cases run
            write(str(data), np.random.default_rng(list(CASES).index(name)))
        result = run_local(str(data), str(REPO), str(out / "runs" / name), time_budget=args.time_budget, t0=args.t0,
                           overwrite=True, verbose=False)
        o = result.outcome
        first = f"{o.first_prediction_time:.2f}" if o.first_prediction_time is not None else "-"
        final = f"{o.scores[-1]:.3f}" if o.scores else "-"
        lines.append(f"| {name} | {what} | {STATUS.get(result.exit_code, f'exit {result.exit_code}')} | "
                     f"{len(o.scores)} | {first} | {final} | {o.alc:.4f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
