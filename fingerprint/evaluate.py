"""How well a selector identifies known datasets, and what it picks for an unseen one.

    python -m fingerprint.evaluate --store STORE --selector NAME [--params JSON]
                                   [--batch-sizes 1,2,4,...,1024] [--repeats 20] [--plot FILE]
    python -m fingerprint.evaluate --store STORE --selector NAME --leave-one-out [--batch-size 64] [--csv FILE]

Identification: each dataset's vectors are split (70 % to fit the selector, 30 % held out); for
every batch size, random batches of held-out vectors (drawn with replacement when the batch is
larger than the held-out part) are given to the selector; the table holds the share of batches
whose top-ranked dataset is their source, and the time per selection (the paper's Figure 5).
Leave-one-dataset-out: each dataset is removed from the store, the selector is fitted on the
rest, and batches of the removed dataset show which known dataset it would be matched with.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

import fingerprint  # noqa: F401  (triton guard)
from fingerprint.selectors import BatchTooSmallError, Selector, get_selector, list_selectors
from fingerprint.store import DatasetEntry, Store

__all__ = ["IdentificationRow", "split_store", "random_batches", "identification_curve", "leave_one_out", "main"]

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class IdentificationRow:
    batch_size: int
    accuracy: float | None  # None when the selector cannot use batches this small
    ms_per_selection: float | None


def split_store(store: Store, fraction: float = 0.3, seed: int = 0) -> tuple[Store, dict[str, np.ndarray]]:
    """(store of the fitting part, held-out vectors per dataset)."""
    rng = np.random.default_rng(seed)
    fit, held = Store(store.info), {}
    for name, entry in store.entries.items():
        order = rng.permutation(len(entry.features))
        n_held = max(1, int(round(fraction * len(order))))
        if len(order) - n_held < 1:
            raise ValueError(f"dataset {name!r} has too few vectors ({len(order)}) to hold some out")
        held[name] = entry.features[order[:n_held]].astype(np.float32)
        fit.add(DatasetEntry(name, entry.features[order[n_held:]], entry.meta))
    return fit, held


def random_batches(vectors: np.ndarray, size: int, repeats: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`repeats` random batches of `size` rows (drawn with replacement only when there are fewer rows)."""
    return [vectors[rng.choice(len(vectors), size=size, replace=size > len(vectors))] for _ in range(repeats)]


def identification_curve(selector: Selector, store: Store, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
                         repeats: int = 20, seed: int = 0) -> list[IdentificationRow]:
    fit, held = split_store(store, seed=seed)
    selector.fit(fit)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for size in batch_sizes:
        if size < selector.min_batch:
            rows.append(IdentificationRow(size, None, None))
            continue
        correct = total = 0
        elapsed = 0.0
        for name, vectors in held.items():
            for batch in random_batches(vectors, size, repeats, rng):
                start = time.perf_counter()
                picked = selector.predict(batch, store.entries[name].meta)
                elapsed += time.perf_counter() - start
                correct += picked == name
                total += 1
        rows.append(IdentificationRow(size, correct / total, 1000 * elapsed / total))
    return rows


def leave_one_out(selector_name: str, params: dict, store: Store, batch_size: int = 64, repeats: int = 10,
                  seed: int = 0) -> list[tuple[str, str, float]]:
    """For each dataset: (dataset, the known dataset picked most often for it, share of batches)."""
    if len(store) < 2:
        raise ValueError("leave-one-dataset-out needs at least two datasets in the store")
    rng = np.random.default_rng(seed)
    out = []
    for name, entry in store.entries.items():
        selector = get_selector(selector_name, **params).fit(store.without(name))
        vectors = entry.features.astype(np.float32)
        picks = Counter(selector.predict(b, entry.meta) for b in random_batches(vectors, batch_size, repeats, rng))
        best, count = picks.most_common(1)[0]
        out.append((name, best, count / repeats))
    return out


def _plot(rows: list[IdentificationRow], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r.batch_size for r in usable], [r.accuracy for r in usable], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test batch size")
    ax.set_ylabel("dataset identification accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(True)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fingerprint.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--selector", required=True, choices=list_selectors())
    parser.add_argument("--params", default="{}", help="selector hyperparameters as JSON")
    parser.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="PNG of accuracy versus batch size")
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the leave-one-out mode")
    parser.add_argument("--csv", help="leave-one-out result as CSV (dataset,selected,share)")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
        store = Store.load(args.store)
        if args.leave_one_out:
            rows = leave_one_out(args.selector, params, store, args.batch_size, args.repeats, args.seed)
            print(f"| dataset | selected (leave-one-dataset-out, {args.selector}) | share of batches |")
            print("|---|---|---|")
            for name, best, share in rows:
                print(f"| {name} | {best} | {share:.2f} |")
            if args.csv:
                with open(args.csv, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["dataset", "selected", "share"])
                    writer.writerows(rows)
            return 0
        sizes = tuple(int(s) for s in args.batch_sizes.split(","))
        rows = identification_curve(get_selector(args.selector, **params), store, sizes, args.repeats, args.seed)
    except (ValueError, json.JSONDecodeError, BatchTooSmallError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.selector} on {len(store)} datasets ({store.info.backbone}, weights {store.info.weights})")
    print("| batch size | identification accuracy | ms per selection |")
    print("|---|---|---|")
    for r in rows:
        acc = "n/a (batch too small)" if r.accuracy is None else f"{r.accuracy:.3f}"
        ms = "" if r.ms_per_selection is None else f"{r.ms_per_selection:.2f}"
        print(f"| {r.batch_size} | {acc} | {ms} |")
    if args.plot:
        _plot(rows, args.plot, f"{args.selector}: accuracy vs test batch size")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
