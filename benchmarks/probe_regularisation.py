"""Which inverse regularisation C suits the frozen-feature probe, and can the data choose it?

    python benchmarks/probe_regularisation.py --datasets D [D ...] [--samples 100 450] [--sides 64 128]
                                              [--grid 0.01 0.03 0.1 0.3 0.5 1] [--weights W] [--test 600]
                                              [--features probe|pixels] [--reference 0.5] [--storage 0 64 96]

For each dataset (AutoDL format), training-sample size and probe side: the probe's features
(`efficientnet_lite0`, the bundle's probe network; or with `--features pixels` the pixel model's
downsampled pixels, `--sides` then being the pixel side) of the first N training samples and of up to
`--test` test samples; a logistic regression (the engine's `LinearProbe`, its solver tolerance) fitted
for every C of the grid. Prints the test NAUC per C, and of the C chosen per dataset by 5-fold
out-of-fold NAUC on the training sample (what the engine could do at run time, at five times the
cost), against `--reference` (C = 0.5: the probe's value before the `probe_C` setting; 0.1 for pixels).
`--storage` decodes the images at each given side first (0: their own size, when all share it), as the engine
stores them, to see what resizing twice costs. Use datasets the choice will not be judged on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--samples", nargs="+", type=int, default=[100, 450])
    p.add_argument("--sides", nargs="+", type=int, default=[64, 128])
    p.add_argument("--grid", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3, 0.5, 1.0])
    p.add_argument("--weights", default=str(REPO / "bundle" / "weights" / "efficientnet_lite0-imagenet.pt"))
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--features", choices=("probe", "pixels"), default="probe")
    p.add_argument("--reference", type=float, default=0.5)
    p.add_argument("--storage", nargs="+", type=int, help="decode sides (0: native); default: the largest side")
    args = p.parse_args(argv)

    from benchmarks._sample import read_sample
    from fingerprint.extractor import FeatureExtractor
    from learner.data import is_multilabel
    from runtime.engine import _folds, pixel_features
    from runtime.probe import LinearProbe
    from scoring.metrics import nauc

    extractor = FeatureExtractor("efficientnet_lite0", args.weights, resolution=64)
    rows: list[tuple[str, int, int, list[float], float, float]] = []
    print("| dataset | storage | N | side | " + " | ".join(f"C={c:g}" for c in args.grid)
          + f" | CV-chosen C | test NAUC (CV) | C={args.reference:g} |")
    print("|---|---|---|---|" + "---|" * (len(args.grid) + 3))
    for root in args.datasets:
        name = Path(root).name
        for storage in args.storage or [max(args.sides)]:
            size = (storage, storage) if storage else None
            train, test, y_test = read_sample(root, train=max(args.samples), test=args.test, size=size)
            label = storage or f"native {train.x.shape[2]}"
            multilabel = is_multilabel(train.y)
            for n in args.samples:
                x, y = train.x[:n], train.y[:n]
                for side in args.sides:
                    if args.features == "pixels":
                        f_train, f_test = pixel_features(x, side), pixel_features(test.x, side)
                    else:
                        f_train = extractor.extract(x, resolution=side)
                        f_test = extractor.extract(test.x, resolution=side)
                    folds = _folds(y, 5, 0, multilabel)
                    scores, cv = [], []
                    for c in args.grid:
                        def probe() -> LinearProbe:
                            return LinearProbe(multilabel, y.shape[1], 0, C=c, tol=args.tol)
                        scores.append(nauc(y_test, probe().fit(f_train, y).predict(f_test)))
                        oof = np.zeros(y.shape, np.float32)
                        for fit, held in folds:
                            oof[held] = probe().fit(f_train[fit], y[fit]).predict(f_train[held])
                        cv.append(nauc(y, oof))
                    best = int(np.argmax(cv))
                    fixed = (scores[args.grid.index(args.reference)] if args.reference in args.grid
                             else nauc(y_test, LinearProbe(multilabel, y.shape[1], 0, C=args.reference,
                                                            tol=args.tol).fit(f_train, y).predict(f_test)))
                    rows.append((name, n, side, scores, scores[best], fixed))
                    print(f"| {name} | {label} | {len(x)} | {side} | " + " | ".join(f"{v:.3f}" for v in scores)
                          + f" | {args.grid[best]:g} | {scores[best]:.3f} | {fixed:.3f} |", flush=True)
    means = [statistics.fmean(r[3][i] for r in rows) for i in range(len(args.grid))]
    print(f"| **mean** | | | | " + " | ".join(f"{m:.3f}" for m in means)
          + f" | | {statistics.fmean(r[4] for r in rows):.3f} | {statistics.fmean(r[5] for r in rows):.3f} |")
    return 0


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"({time.time() - start:.0f} s)")
    sys.exit(code)
