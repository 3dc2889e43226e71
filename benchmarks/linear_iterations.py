"""What a cap on the linear models' solver iterations costs in test NAUC, and what it saves in fit time.

    python benchmarks/linear_iterations.py --datasets D [D ...] [--caps 10 20 30 50 300] [--samples 434]
                                           [--features pixels probe] [--test 600] [--repeats 3]

For each dataset (AutoDL format): the first answers' features of the first N training samples (`pixels`: the
pixel model's 16 px pixels; `probe`: the bundle's probe network, EfficientNet-Lite0 stage features at 64 px) and
of up to `--test` test samples, decoded at 64 px; the engine's `LinearProbe` (its C and solver tolerance) fitted
with each iteration cap. Prints per cap the fit time (median of `--repeats`), the iterations used and the test
NAUC, and per cap the mean time ratio and mean NAUC difference against the last cap (the reference: the engine's
cap before `pixel_max_iter`, still the probes'). The 434 samples are what the first answer fits on (512 less the
15 % held out). Choose the cap on datasets it will not be judged on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--caps", nargs="+", type=int, default=[10, 20, 30, 50, 300])
    p.add_argument("--samples", type=int, default=434)
    p.add_argument("--features", nargs="+", choices=("pixels", "probe"), default=["pixels", "probe"])
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--weights", default=str(REPO / "bundle" / "weights" / "efficientnet_lite0-imagenet.pt"))
    args = p.parse_args(argv)

    from benchmarks._sample import read_sample
    from fingerprint.extractor import FeatureExtractor
    from learner.data import is_multilabel
    from runtime.engine import pixel_features
    from runtime.probe import LinearProbe
    from runtime.settings import RuntimeSettings
    from scoring.metrics import nauc

    s = RuntimeSettings()
    extractor = FeatureExtractor("efficientnet_lite0", args.weights, resolution=64)
    caps, ref = args.caps, len(args.caps) - 1
    print("| dataset | features | " + " | ".join(f"cap {c}: s / iters / NAUC" for c in caps) + " |")
    print("|---|---|" + "---|" * len(caps))
    ratios: list[list[float]] = [[] for _ in caps]
    gains: list[list[float]] = [[] for _ in caps]
    for root in args.datasets:
        train, test, y_test = read_sample(root, train=args.samples, test=args.test, size=(64, 64))
        x, y = train.x, train.y
        multilabel = is_multilabel(y)
        for kind in args.features:
            if kind == "pixels":
                f_train, f_test, C = pixel_features(x, s.pixel_size), pixel_features(test.x, s.pixel_size), s.pixel_C
            else:
                f_train, f_test, C = (extractor.extract(x, pooling="stages"),
                                      extractor.extract(test.x, pooling="stages"), s.probe_C)
            cells, times, scores = [], [], []
            for cap in caps:
                seconds = []
                for _ in range(args.repeats):
                    tick = time.perf_counter()
                    model = LinearProbe(multilabel, y.shape[1], s.seed, C=C, tol=s.linear_tol,
                                        max_iter=cap).fit(f_train, y)
                    seconds.append(time.perf_counter() - tick)
                score = nauc(y_test, model.predict(f_test))
                times.append(statistics.median(seconds))
                scores.append(score)
                cells.append(f"{times[-1]:.3f} / {model.iterations()} / {score:.3f}")
            for i in range(len(caps)):
                ratios[i].append(times[i] / max(times[ref], 1e-9))
                gains[i].append(scores[i] - scores[ref])
            print(f"| {Path(root).name} | {kind} | " + " | ".join(cells) + " |", flush=True)
    print("| **mean time ratio / NAUC difference** | | " + " | ".join(
        f"{statistics.fmean(r):.2f} / {statistics.fmean(g):+.4f}" for r, g in zip(ratios, gains)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
