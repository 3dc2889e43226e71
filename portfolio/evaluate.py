"""Leave-one-dataset-out selection quality on any performance matrix.

    python -m portfolio.evaluate --matrix matrix.csv --meta-features meta.csv --selector knn [--k 1] [--safe]
    python -m portfolio.evaluate --matrix matrix.csv --meta-features meta.csv --selector pairwise [--l2 1.0]
    python -m portfolio.evaluate --matrix matrix.csv --selector mapping --mapping lodo.csv [--safe]
    python -m portfolio.evaluate --matrix matrix.csv --store store.npz --families derived.json --selector pairwise
    python -m portfolio.evaluate --matrix matrix.csv --store store.npz [--selector mlp_vote] [--bundle bundle]

Both CSVs have dataset names in the first column (matrices and meta-features made elsewhere work
too); `--store` computes meta-features from a fingerprint store instead. For each dataset d, the
selector sees only the other datasets, and with `--families` only those of other families (a derived
dataset and its source are one family); a configuration named after a dataset of d's family was
tuned on it and is never picked for d, nor counted in d's oracle. `knn` takes the k nearest by
standardised meta-features and picks the configuration with the best mean score over them;
`mapping` reads which known dataset d was matched with (e.g. `fingerprint.evaluate
--leave-one-out --csv`) and picks that dataset's best configuration; `pairwise` learns, from the
other datasets, a linear score per configuration over the meta-features with a pairwise ranking
loss (in the manner of ZAP-HPO; a crashed cell ranks below every result) and picks the best
scored (with strong regularisation it falls back to the single best). A registered fingerprint selector
(`fingerprint.selectors`: `mlp_vote`, `mlp_moments`, `kmeans_vote`, ...; needs `--store`) runs the
Model's own selection: fitted on the store without d's family, it names the known dataset most like
batches of d's fingerprints, whose best configuration is picked. Without `--selector`, the selector
the bundle ships (`--bundle`, its saved selector and hyperparameters) is the one evaluated. Regret is d's oracle (its best
score) minus the score of the pick (a crashed pick scores 0 here, worst case for ALC-like scores).
Reported next to: 1-NN on the meta-features (when given), single best (best mean over the other
datasets), random (expected regret of a uniform pick), oracle, and a `default` column when present.
`--safe` never picks a configuration that crashed (empty cell, or 0) on any of the other datasets.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from portfolio.matrix import read_labelled_csv, read_matrix

if TYPE_CHECKING:
    from fingerprint.store import Store

__all__ = ["Report", "PICKERS", "read_table", "held_out", "fair_configs", "lodo_regret", "random_regret", "store_meta_features",
           "knn_picker", "pairwise_picker", "fingerprint_picker", "shipped_selector", "mapping_picker", "read_families", "main"]

Matrix = dict[str, dict[str, float | None]]


@dataclass
class Report:
    name: str
    regrets: dict[str, float]
    picks: dict[str, str]
    oracle_hits: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.regrets.values())

    @property
    def median(self) -> float:
        return statistics.median(self.regrets.values())


def read_table(path: str) -> dict[str, list[float]]:
    """A meta-feature CSV: first column dataset names, the rest numbers."""
    return read_labelled_csv(path)[1]


def _score(matrix: Matrix, dataset: str, config: str) -> float:
    value = matrix[dataset][config]
    return 0.0 if value is None else value


def _allowed(matrix: Matrix, others: list[str], safe: bool) -> list[str]:
    configs = list(next(iter(matrix.values())))
    if not safe:
        return configs
    ok = [c for c in configs if all(matrix[o][c] not in (None, 0.0) for o in others)]
    if not ok:
        raise ValueError("--safe: every configuration crashed on some dataset")
    return ok


def _best_mean(matrix: Matrix, datasets: list[str], allowed: list[str]) -> str:
    return max(allowed, key=lambda c: (statistics.fmean(_score(matrix, d, c) for d in datasets), -allowed.index(c)))


def held_out(matrix: Matrix, d: str, families: dict[str, str] | None = None, safe: bool = False
             ) -> tuple[list[str], list[str]]:
    """(the datasets a selector may learn from, the configurations it may pick) when `d` is unseen.

    The oracle of d is the best of the configurations not tuned on d's family (`fair_configs`), safe or not.


    Leakage-free: every dataset of d's family (`families`: dataset -> family; by default each dataset is
    its own) is left out, and so is every configuration named after one of them (a configuration named
    after a dataset was tuned on it)."""
    families = families or {}
    group = families.get(d, d)
    others = [o for o in matrix if families.get(o, o) != group]
    if not others:
        raise ValueError(f"dataset {d!r}: every dataset is of its family {group!r}; nothing to learn from")
    fair = fair_configs(matrix, d, families)
    if not fair:
        raise ValueError(f"dataset {d!r}: every configuration was tuned on its family {group!r}")
    allowed = [c for c in _allowed(matrix, others, safe) if c in fair]
    if not allowed:
        raise ValueError(f"dataset {d!r}: --safe: every configuration not tuned on its family crashed elsewhere")
    return others, allowed


def fair_configs(matrix: Matrix, d: str, families: dict[str, str] | None = None) -> list[str]:
    """The configurations not tuned on d's family (the candidates of d's oracle)."""
    families = families or {}
    group = families.get(d, d)
    return [c for c in matrix[d] if not (c in matrix and families.get(c, c) == group)]


def lodo_regret(matrix: Matrix, pick: Callable[[str, list[str], list[str]], str], name: str, *, safe: bool = False,
                families: dict[str, str] | None = None) -> Report:
    """`pick(dataset, other datasets, allowed configurations) -> configuration` for each held-out dataset
    (`held_out`: its family and the configurations tuned on it are left out); the oracle is the best fair one."""
    regrets, picks, hits = {}, {}, 0
    for d in matrix:
        others, allowed = held_out(matrix, d, families, safe)
        choice = pick(d, others, allowed)
        oracle = max(_score(matrix, d, c) for c in fair_configs(matrix, d, families))
        regrets[d] = oracle - _score(matrix, d, choice)
        picks[d] = choice
        hits += regrets[d] <= 1e-12
    return Report(name, regrets, picks, hits)


def random_regret(matrix: Matrix, families: dict[str, str] | None = None, safe: bool = False) -> dict[str, float]:
    """The expected regret of a uniform pick among the allowed configurations, per dataset."""
    out = {}
    for d in matrix:
        _, allowed = held_out(matrix, d, families, safe)
        out[d] = (max(_score(matrix, d, c) for c in fair_configs(matrix, d, families))
                  - statistics.fmean(_score(matrix, d, c) for c in allowed))
    return out


def store_meta_features(store_path: str, components: int = 8) -> dict[str, list[float]]:
    """Meta-features of every dataset of a fingerprint store: its simple meta-features (log sizes, channels,
    frames, multilabel) and the first principal components of its mean fingerprint."""
    from sklearn.decomposition import PCA

    from fingerprint.store import Store

    store = Store.load(store_path)
    means = np.array([e.features.astype(np.float32).mean(0) for e in store.entries.values()])
    k = max(0, min(components, len(means) - 1, means.shape[1]))
    pcs = PCA(k, random_state=0).fit_transform(means) if k else np.zeros((len(means), 0))
    table = {}
    for (name, entry), pc in zip(store.entries.items(), pcs):
        m = entry.meta
        table[name] = [float(np.log(m["train_size"])), float(np.log(m["classes"])),
                       float(np.log(max(m["height"], 1) * max(m["width"], 1)) / 2), float(m["channels"]),
                       float(np.log(m["sequence_length"])), float(m["multilabel"]), *map(float, pc)]
    return table


def knn_picker(matrix: Matrix, meta: dict[str, list[float]], k: int) -> Callable[[str, list[str], list[str]], str]:
    missing = [d for d in matrix if d not in meta]
    if missing:
        raise ValueError(f"meta-features missing for dataset(s): {', '.join(missing)}")

    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        x = np.array([meta[o] for o in others])
        mu, sd = x.mean(0), x.std(0) + 1e-12
        dist = np.sqrt((((x - mu) / sd - (np.array(meta[d]) - mu) / sd) ** 2).sum(1))
        nearest = [others[i] for i in np.argsort(dist, kind="stable")[:k]]
        return _best_mean(matrix, nearest, allowed)

    return pick


class PairwiseRanker:
    """Scores s(d, c) = w_c · z(d) + b_c over standardised meta-features z, fitted by a pairwise logistic
    loss over the ordered pairs of configurations within each training dataset, plus `l2` · |w|²."""

    def __init__(self, l2: float = 1.0):
        self.l2 = l2

    def fit(self, meta: np.ndarray, scores: np.ndarray) -> PairwiseRanker:
        """`meta` `[D, F]`; `scores` `[D, C]` with NaN for a crash (below every result)."""
        from scipy.optimize import minimize

        self.mu_, self.sd_ = meta.mean(0), meta.std(0) + 1e-12
        z = np.hstack([(meta - self.mu_) / self.sd_, np.ones((len(meta), 1))])
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        d, i, j = np.nonzero(ranked[:, :, None] > ranked[:, None, :] + 1e-12)  # i beats j on dataset d
        n_features, n_configs = z.shape[1], scores.shape[1]
        if len(d) == 0:
            self.w_ = np.zeros((n_configs, n_features))
            return self

        def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
            w = flat.reshape(n_configs, n_features)
            s = z @ w.T  # [D, C]
            margin = s[d, i] - s[d, j]
            value = np.logaddexp(0.0, -margin).mean() + self.l2 * (w[:, :-1] ** 2).sum()  # no penalty on b
            g_margin = -1.0 / (1.0 + np.exp(margin)) / len(d)
            g_s = np.zeros_like(s)
            np.add.at(g_s, (d, i), g_margin)
            np.add.at(g_s, (d, j), -g_margin)
            grad = g_s.T @ z
            grad[:, :-1] += 2 * self.l2 * w[:, :-1]
            return value, grad.ravel()

        result = minimize(loss, np.zeros(n_configs * n_features), jac=True, method="L-BFGS-B")
        self.w_ = result.x.reshape(n_configs, n_features)
        return self

    def scores(self, meta: np.ndarray) -> np.ndarray:
        z = np.hstack([(meta - self.mu_) / self.sd_, np.ones((len(meta), 1))])
        return z @ self.w_.T


def pairwise_picker(matrix: Matrix, meta: dict[str, list[float]], l2: float = 1.0
                    ) -> Callable[[str, list[str], list[str]], str]:
    missing = [d for d in matrix if d not in meta]
    if missing:
        raise ValueError(f"meta-features missing for dataset(s): {', '.join(missing)}")
    configs = list(next(iter(matrix.values())))

    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        scores = np.array([[np.nan if matrix[o][c] is None else matrix[o][c] for c in configs] for o in others])
        ranker = PairwiseRanker(l2).fit(np.array([meta[o] for o in others], float), scores)
        predicted = ranker.scores(np.array([meta[d]], float))[0]
        return max(allowed, key=lambda c: (predicted[configs.index(c)], -allowed.index(c)))

    return pick


def fingerprint_picker(matrix: Matrix, store: Store, selector: str, params: dict[str, Any] | None = None,
                       families: dict[str, str] | None = None, *, batch_size: int = 64, repeats: int = 10,
                       seed: int = 0) -> Callable[[str, list[str], list[str]], str]:
    """The run-time flow's selection, left out: for dataset d the registered fingerprint selector `selector`
    (`fingerprint.selectors`, e.g. the bundle's `mlp_vote`) is fitted on the store without d's family, ranks the
    known datasets for `repeats` random batches of `batch_size` of d's fingerprint vectors (the Model reads one
    batch of `fingerprint_batch` = 64), and the dataset ranked first most often, among those the matrix lets it
    learn from, gives its best configuration, as the bundle's dataset -> configuration map does."""
    from fingerprint.evaluate import random_batches
    from fingerprint.selectors import get_selector

    missing = [d for d in matrix if d not in store.entries]
    if missing:
        raise ValueError(f"the fingerprint store has no vectors of dataset(s): {', '.join(missing)}")
    families = families or {}
    rng = np.random.default_rng(seed)

    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        group = families.get(d, d)
        known = store.without(*(name for name in store.entries if families.get(name, name) == group))
        fitted = get_selector(selector, **(params or {})).fit(known)
        entry = store.entries[d]
        votes: dict[str, int] = {}
        for batch in random_batches(entry.features.astype(np.float32), batch_size, repeats, rng):
            match = next((name for name, _ in fitted.rank(batch, entry.meta) if name in others), None)
            if match is not None:
                votes[match] = votes.get(match, 0) + 1
        if not votes:
            raise ValueError(f"dataset {d!r}: {selector} ranked none of the other datasets of the matrix")
        return _best_mean(matrix, [max(votes, key=votes.get)], allowed)

    return pick


def shipped_selector(bundle: str) -> tuple[str, dict[str, Any]]:
    """The fingerprint selector a bundled portfolio ships (its registered name and hyperparameters, read from
    the saved selector the manifest names): what `portfolio.evaluate` runs when no `--selector` is named."""
    from fingerprint.selectors import load_selector
    from runtime.manifest import Manifest

    manifest = Manifest.load(bundle)
    fitted = load_selector(str(Path(bundle) / manifest.selector))
    return fitted.registry_name, fitted.get_params()


def mapping_picker(matrix: Matrix, mapping: dict[str, str]) -> Callable[[str, list[str], list[str]], str]:
    def pick(d: str, others: list[str], allowed: list[str]) -> str:
        if d not in mapping:
            raise ValueError(f"the mapping has no entry for dataset {d!r}")
        match = mapping[d]
        if match not in others:
            raise ValueError(f"dataset {d!r} is mapped to {match!r}, which is not another dataset of the matrix")
        return _best_mean(matrix, [match], allowed)

    return pick


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", required=True)
    p.add_argument("--selector", help="knn, pairwise, mapping, or a registered fingerprint selector (with --store: "
                                      "the run-time flow's selection); default: the one --bundle ships")
    p.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "bundle"),
                   help="the bundled portfolio whose selector is the default")
    p.add_argument("--params", default="{}", help="a fingerprint selector's hyperparameters as JSON (default: "
                                                  "the shipped ones when it is the shipped selector)")
    p.add_argument("--batch-size", type=int, default=64, help="fingerprint vectors per batch (fingerprint selectors)")
    p.add_argument("--repeats", type=int, default=10, help="batches per dataset (fingerprint selectors)")
    p.add_argument("--meta-features", help="CSV of meta-features (knn, pairwise)")
    p.add_argument("--store", help="a fingerprint store instead of --meta-features (simple meta-features and "
                                   "principal components of each dataset's mean fingerprint)")
    p.add_argument("--families", help="CSV dataset,family (e.g. a derived dataset's source), or a derive "
                                      "derived.json: a whole family is left out together")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--l2", type=float, default=1.0, help="regularisation of the pairwise ranker")
    p.add_argument("--mapping", help="CSV dataset,selected[,...] (mapping)")
    p.add_argument("--safe", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        params = json.loads(args.params)
        if not isinstance(params, dict):
            raise ValueError(f"--params must be a JSON object, got {args.params!r}")
        if args.selector is None:
            try:
                args.selector, shipped = shipped_selector(args.bundle)
            except ValueError as exc:
                raise ValueError(f"no --selector named and the bundle's cannot be read ({exc})") from exc
            params = {**shipped, **params}
        fingerprint = args.selector not in PICKERS
        if fingerprint:
            from fingerprint.selectors import list_selectors  # imports torch: for the fingerprint selectors only
        if fingerprint and args.selector not in list_selectors():
            raise ValueError(f"--selector {args.selector!r}: not one of {', '.join(sorted(PICKERS))} nor a "
                             f"registered fingerprint selector ({', '.join(list_selectors())})")
        if params and not fingerprint:
            raise ValueError(f"--params sets a fingerprint selector's hyperparameters; --selector {args.selector} "
                             "has its own options")
        if fingerprint and not args.store:
            raise ValueError(f"--selector {args.selector} reads fingerprints: give --store STORE (or name --selector "
                             "knn or pairwise for meta-feature CSVs)")
        matrix = read_matrix(args.matrix)
        if len(matrix) < 2:
            raise ValueError("leave-one-dataset-out needs at least two datasets")
        meta = (read_table(args.meta_features) if args.meta_features
                else store_meta_features(args.store) if args.store else None)
        families = read_families(args.families) if args.families else None
        if fingerprint:
            from fingerprint.store import Store

            store = Store.load(args.store)
            make = lambda: fingerprint_picker(matrix, store, args.selector, params, families,  # noqa: E731
                                              batch_size=args.batch_size, repeats=args.repeats, seed=args.seed)
        else:
            make = lambda: PICKERS[args.selector](matrix, meta, args)  # noqa: E731
        reports = compare(matrix, meta, args.selector, make, k=args.k, safe=args.safe, families=families)
        configs = list(next(iter(matrix.values())))
        randoms = random_regret(matrix, families, args.safe)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"leave-one-{'family' if families else 'dataset'}-out regret on {len(matrix)} datasets x {len(configs)} "
          f"configurations{' (safe)' if args.safe else ''}")
    print("| method | mean regret | median regret | oracle hits |\n|---|---|---|---|")
    for r in reports:
        print(f"| {r.name} | {r.mean:.4f} | {r.median:.4f} | {r.oracle_hits}/{len(matrix)} |")
    print(f"| random (expected) | {statistics.fmean(randoms.values()):.4f} | "
          f"{statistics.median(randoms.values()):.4f} | - |")
    print(f"| oracle | 0.0000 | 0.0000 | {len(matrix)}/{len(matrix)} |")
    print("\n| dataset | " + " | ".join(f"{r.name} pick" for r in reports) + " |")
    print("|---|" + "---|" * len(reports))
    for d in matrix:
        print(f"| {d} | " + " | ".join(f"{r.picks[d]} ({r.regrets[d]:.3f})" for r in reports) + " |")
    return 0


def compare(matrix: Matrix, meta: dict[str, list[float]] | None, name: str,
            make_picker: Callable[[], Callable[[str, list[str], list[str]], str]], *, k: int = 1, safe: bool = False,
            families: dict[str, str] | None = None) -> list[Report]:
    """The selector `name` beside 1-NN (given meta-features), single best and the `default` column (if any)."""
    reports = [lodo_regret(matrix, make_picker(), name, safe=safe, families=families)]
    if meta is not None and (name, k) != ("knn", 1):
        reports.append(lodo_regret(matrix, knn_picker(matrix, meta, 1), "1-NN", safe=safe, families=families))
    reports.append(lodo_regret(matrix, lambda d, o, a: _best_mean(matrix, o, a), "single best", safe=safe,
                               families=families))
    if "default" in next(iter(matrix.values())):
        reports.append(lodo_regret(matrix, lambda d, o, a: "default", "default", families=families))
    return reports


def read_families(path: str) -> dict[str, str]:
    """dataset -> family from a CSV (dataset,family) or a derive `derived.json` (name -> source; each source
    is its own family's member too)."""
    if path.endswith(".json"):
        import json

        try:
            with open(path) as f:
                entries = json.load(f)
            if not isinstance(entries, list):
                raise TypeError(f"a {type(entries).__name__}, not a list")
            families = {e["name"]: e["source"] for e in entries}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a derived.json list of {{name, source}} ({exc})") from exc
        return {**{s: s for s in families.values()}, **families}
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from exc
    bad = [i for i, row in enumerate(rows[1:], start=2) if len(row) < 2]
    if bad:
        raise ValueError(f"{path}: line {bad[0]} needs dataset,family")
    return {row[0]: row[1] for row in rows[1:]}


def _needs_meta(name: str, meta: dict[str, list[float]] | None) -> dict[str, list[float]]:
    if meta is None:
        raise ValueError(f"--selector {name} needs --meta-features")
    return meta


def _mapping(matrix: Matrix, meta: dict[str, list[float]] | None, args: argparse.Namespace
             ) -> Callable[[str, list[str], list[str]], str]:
    if not args.mapping:
        raise ValueError("--selector mapping needs --mapping")
    with open(args.mapping, newline="") as f:
        return mapping_picker(matrix, {row[0]: row[1] for row in list(csv.reader(f))[1:]})


# selector name -> (matrix, meta-features or None, CLI arguments) -> picker
PICKERS: dict[str, Callable[[Matrix, dict[str, list[float]] | None, argparse.Namespace],
                            Callable[[str, list[str], list[str]], str]]] = {
    "knn": lambda m, meta, a: knn_picker(m, _needs_meta("knn", meta), a.k),
    "pairwise": lambda m, meta, a: pairwise_picker(m, _needs_meta("pairwise", meta), a.l2),
    "mapping": _mapping,
}


if __name__ == "__main__":
    sys.exit(main())
