"""Which frozen ImageNet network should the linear probe read, at what side, and does a second one help?

    python benchmarks/probe_backbones.py --datasets D [D ...] [--weights-dir DIR] [--samples 512] [--test 600]
                                         [--rungs efficientnet_lite0@224+flip efficientnet_lite2@224+flip ...]

For each dataset (AutoDL format): the features of the first N training samples and of up to `--test` test
samples for every rung (`backbone@side`, `+flip` averages the input's and its mirror's features, as the
engine's flipped rung; `+stages` reads the pooled stage outputs instead of the penultimate features, as the
engine's `probe_features` "stages"; e.g. `efficientnet_lite0@128+flip+stages`); the engine's `LinearProbe` (the `probe_C` default) fitted on each; the test NAUC per
rung, of the features of all rungs concatenated, and of the probes' probabilities averaged over the rungs.
The table's last column is the extraction rate (images/s, train and test together) per rung, measured in
this run on this machine. Decide on datasets the choice will not be judged on (the pool), check on others.
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


def _rung(text: str) -> tuple[str, int, bool, str]:
    backbone, _, rest = text.partition("@")
    side, *options = rest.split("+") if rest else ["224"]
    unknown = set(options) - {"flip", "stages"}
    if unknown or not side.isdigit():
        raise SystemExit(f"--rungs {text!r}: expected BACKBONE@SIDE[+flip][+stages]")
    return backbone, int(side), "flip" in options, "stages" if "stages" in options else "head"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--weights-dir", default=str(REPO / "bundle" / "weights"))
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--rungs", nargs="+", default=["efficientnet_lite0@224+flip", "efficientnet_lite2@224+flip"])
    p.add_argument("--decode", type=int, default=256, help="side the images are decoded at (as the engine stores them)")
    args = p.parse_args(argv)

    from benchmarks._sample import read_sample
    from fingerprint.extractor import FeatureExtractor
    from learner.data import is_multilabel
    from learner.weights import weights_path
    from runtime.probe import LinearProbe
    from runtime.settings import RuntimeSettings
    from scoring.metrics import nauc

    rungs = [_rung(r) for r in args.rungs]
    extractors = {b: FeatureExtractor(b, weights_path(args.weights_dir, b, "imagenet"))
                  for b in dict.fromkeys(b for b, _, _, _ in rungs)}
    C = RuntimeSettings().probe_C
    header = [*args.rungs, "concat", "mean prob"]
    print("| dataset | N | " + " | ".join(header) + " | images/s per rung |")
    print("|---|---|" + "---|" * (len(header) + 1))
    table: list[list[float]] = []
    for root in args.datasets:
        name = Path(root).name
        train, test, y_test = read_sample(root, train=args.samples, test=args.test, size=(args.decode, args.decode))
        y = train.y
        multilabel = is_multilabel(y)
        scores, probs, feats, rates = [], [], [], []
        for backbone, side, flip, pooling in rungs:
            start = time.perf_counter()
            f_train = extractors[backbone].extract(train.x, resolution=side, flip=flip, pooling=pooling)
            f_test = extractors[backbone].extract(test.x, resolution=side, flip=flip, pooling=pooling)
            rates.append((len(train.x) + len(test.x)) / (time.perf_counter() - start))
            prob = LinearProbe(multilabel, y.shape[1], 0, C=C).fit(f_train, y).predict(f_test)
            scores.append(nauc(y_test, prob))
            probs.append(prob)
            feats.append((f_train, f_test))
        concat = LinearProbe(multilabel, y.shape[1], 0, C=C).fit(
            np.concatenate([f[0] for f in feats], 1), y).predict(np.concatenate([f[1] for f in feats], 1))
        row = [*scores, nauc(y_test, concat), nauc(y_test, np.mean(probs, 0))]
        table.append(row)
        print(f"| {name} | {len(train.x)} | " + " | ".join(f"{v:.3f}" for v in row) + " | "
              + " / ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
    print("| **mean** | | " + " | ".join(f"{statistics.fmean(c):.3f}" for c in zip(*table)) + " | |")
    return 0


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"({time.time() - start:.0f} s)")
    sys.exit(code)
