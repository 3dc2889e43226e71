"""Greedy reduction and leave-one-dataset-out regret on small matrices worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from portfolio.evaluate import main as evaluate_main
from portfolio.reduce import greedy_portfolio, main as reduce_main, portfolio_value

#        d1   d2   d3
M = {"d1": {"A": 0.9, "B": 0.5, "C": 0.6},
     "d2": {"A": 0.1, "B": 0.8, "C": 0.6},
     "d3": {"A": 0.5, "B": 0.4, "C": 0.6}}


def test_greedy_mixed_objective() -> None:
    # size 1: mixed(A) = .5(.1 + .5) = .3, mixed(B) = .5(.4 + .5667) = .4833, mixed(C) = .6 -> C
    # size 2: C+A -> best [.9, .6, .6]: .5(.6 + .7) = .65; C+B -> [.6, .8, .6]: .5(.6 + .6667) = .6333 -> A
    steps = greedy_portfolio(M, 2, "mixed")
    assert [s[0] for s in steps] == ["C", "A"]
    assert [s[1] for s in steps] == pytest.approx([0.6, 0.65])
    assert portfolio_value(M, ["A", "B", "C"], "mean") == pytest.approx((0.9 + 0.8 + 0.6) / 3)


def test_greedy_ties_go_to_column_order_and_min_objective() -> None:
    # min: C first (.6); then A+C and B+C both have min .6 -> A (first column)
    assert [s[0] for s in greedy_portfolio(M, 2, "min")] == ["C", "A"]


def test_crashed_cells_never_count_as_scores() -> None:
    m = {d: dict(row) for d, row in M.items()}
    for d, v in (("d1", 1.0), ("d2", None), ("d3", 1.0)):
        m[d]["D"] = v
    assert portfolio_value(m, ["D"], "mixed") == -math.inf  # d2 has no result at all
    assert greedy_portfolio(m, 1, "mixed")[0][0] == "C"
    # with C covering d2: [1.0, .6, 1.0] -> .5(.6 + .8667)
    assert greedy_portfolio(m, 2, "mixed")[1] == ("D", pytest.approx(0.5 * (0.6 + 2.6 / 3)))


def _write(tmp_path: Path, matrix: dict, name: str = "m.csv") -> str:
    configs = list(next(iter(matrix.values())))
    lines = ["dataset," + ",".join(configs)]
    lines += [d + "," + ",".join("" if row[c] is None else str(row[c]) for c in configs) for d, row in matrix.items()]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return str(tmp_path / name)


def test_reduce_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _write(tmp_path, M)
    assert reduce_main(["--matrix", path, "--size", "2", "--curve", str(tmp_path / "c.png"),
                        "--out", str(tmp_path / "p.txt")]) == 0
    assert "| 2 | A | 0.6500 |" in capsys.readouterr().out
    assert (tmp_path / "p.txt").read_text() == "C\nA\n" and (tmp_path / "c.png").stat().st_size > 5000
    assert reduce_main(["--matrix", path, "--size", "4"]) == 2


def test_lodo_regret_knn(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Meta-features 0, 1, 10: d1 <-> d2 are neighbours, d3's nearest is d2.

    knn(k=1): d1 takes d2's best (B): .9 - .5 = .4; d2 takes d1's best (A): .8 - .1 = .7;
    d3 takes d2's best (B): .6 - .4 = .2 -> mean .4333, median .4, no oracle hit.
    """
    (tmp_path / "meta.csv").write_text("dataset,size\nd1,0\nd2,1\nd3,10\n")
    assert evaluate_main(["--matrix", _write(tmp_path, M), "--meta-features", str(tmp_path / "meta.csv"),
                          "--selector", "knn"]) == 0
    out = capsys.readouterr().out
    assert "| knn | 0.4333 | 0.4000 | 0/3 |" in out
    # single best over the two other datasets: d1 -> B (tie B/C, first column), d2 -> A, d3 -> B
    assert "| single best | 0.4333 | 0.4000 | 0/3 |" in out
    # random: expected regret per dataset: d1 .9-.6667, d2 .8-.5, d3 .6-.5 -> mean .2111
    assert "| random (expected) | 0.2111 |" in out


def test_lodo_safe_and_default(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    m = {d: dict(row) for d, row in M.items()}
    for d, v, default in (("d1", 1.0, 0.5), ("d2", None, 0.5), ("d3", 1.0, 0.5)):
        m[d]["D"] = v
        m[d]["default"] = default
    path = _write(tmp_path, m)
    (tmp_path / "lodo.csv").write_text("dataset,selected,share\nd1,d3,1\nd2,d1,1\nd3,d1,1\n")
    args = ["--matrix", path, "--selector", "mapping", "--mapping", str(tmp_path / "lodo.csv")]
    assert evaluate_main(args) == 0
    plain = capsys.readouterr().out
    assert "| d2 | D (0.800)" in plain  # d1's best (D) crashed on d2: regret .8
    assert "| default | " in plain
    assert evaluate_main(args + ["--safe"]) == 0
    safe = capsys.readouterr().out
    # D crashed on d2, a training dataset for d1 and d3: d1 takes d3's best safe config (C, 1.0 - .6),
    # d3 takes d1's (A, 1.0 - .5); d2's training datasets never saw D crash, so d2 still gets it.
    assert "| d1 | C (0.400)" in safe and "| d3 | A (0.500)" in safe and "| d2 | D (0.800)" in safe
    (tmp_path / "bad.csv").write_text("dataset,selected\nd1,d1\nd2,d1\nd3,d1\n")
    assert evaluate_main(["--matrix", path, "--selector", "mapping", "--mapping", str(tmp_path / "bad.csv")]) == 2
    assert "not another dataset" in capsys.readouterr().err


def _synthetic(n: int = 24) -> tuple[dict, dict]:
    """Meta-feature x in [0, 1]: A scores x, B scores 1 - x, C 0.45 everywhere, D 0.95 where x < 0.3 and
    crashes elsewhere."""
    xs = np.linspace(0, 1, n)
    matrix = {f"d{i}": {"A": x, "B": 1 - x, "C": 0.45, "D": 0.95 if x < 0.3 else None} for i, x in enumerate(xs)}
    meta = {f"d{i}": [x, 0.0] for i, x in enumerate(xs)}  # a constant meta-feature must do no harm
    return matrix, meta


def test_pairwise_ranker_learns_which_configuration_wins_where() -> None:
    from portfolio.evaluate import _best_mean, lodo_regret, pairwise_picker

    matrix, meta = _synthetic()
    learned = lodo_regret(matrix, pairwise_picker(matrix, meta, l2=1e-3), "pairwise")
    single = lodo_regret(matrix, lambda d, o, a: _best_mean(matrix, o, a), "single best")
    assert learned.mean < 0.05 < single.mean
    # D wins where x < 0.3 and crashes elsewhere: picked only on the low side
    assert all(meta[d][0] < 0.3 for d, c in learned.picks.items() if c == "D")
    assert sum(c == "D" for c in learned.picks.values()) >= 1
    assert all(learned.picks[d] != "D" for d in matrix if meta[d][0] > 0.4)


def test_pairwise_ranker_regularised_to_the_single_best() -> None:
    from portfolio.evaluate import PairwiseRanker

    matrix, meta = _synthetic()
    names = list(matrix)
    scores = np.array([[np.nan if matrix[d][c] is None else matrix[d][c] for c in "ABCD"] for d in names])
    ranker = PairwiseRanker(l2=1e6).fit(np.array([meta[d] for d in names]), scores)
    predicted = ranker.scores(np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert predicted.argmax(1).tolist() == [predicted[0].argmax()] * 2  # the meta-features no longer matter


def test_evaluate_cli_pairwise(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    matrix, meta = _synthetic(8)
    path = _write(tmp_path, matrix)
    (tmp_path / "meta.csv").write_text("dataset,x,c\n" + "".join(f"{d},{v[0]},{v[1]}\n" for d, v in meta.items()))
    assert evaluate_main(["--matrix", path, "--selector", "pairwise"]) == 2
    assert "--selector pairwise needs --meta-features" in capsys.readouterr().err
    assert evaluate_main(["--matrix", path, "--selector", "pairwise", "--meta-features",
                          str(tmp_path / "meta.csv"), "--l2", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "| pairwise |" in out and "| 1-NN |" in out and "| single best |" in out and "| oracle | 0.0000" in out


def test_greedy_stops_when_an_addition_adds_nothing() -> None:
    m = {"d1": {"A": 0.9, "B": 0.9, "C": 0.1}, "d2": {"A": 0.5, "B": 0.5, "C": 0.7}}
    assert [c for c, _ in greedy_portfolio(m, 3, "mean")] == ["A", "C", "B"]
    assert [c for c, _ in greedy_portfolio(m, 3, "mean", min_gain=0.0)] == ["A", "C"]  # B adds nothing to A
    assert [c for c, _ in greedy_portfolio(m, 3, "mean", min_gain=0.2)] == ["A"]  # C adds 0.1


def test_configurations_equal_but_for_the_name_are_one(tmp_path: Path) -> None:
    from learner.config import TrainConfig
    from portfolio.reduce import distinct_configs

    paths = {}
    for name, lr in (("flowers", 0.01), ("mnist", 0.01), ("dtd", 0.02)):
        paths[name] = str(tmp_path / f"{name}.json")
        TrainConfig(backbone="mobilenet_v3_small", weights=None, learning_rate=lr, name=name).save(paths[name])
    kept, dropped = distinct_configs(paths)
    assert list(kept) == ["flowers", "dtd"] and dropped == {"mnist": "flowers"}
    # whole-pipeline incumbents: the same configuration with other run-time settings is another member
    (tmp_path / "mnist.settings.json").write_text('{"patience": 7}')
    kept, dropped = distinct_configs(paths)
    assert list(kept) == ["flowers", "mnist", "dtd"] and dropped == {}
    (tmp_path / "flowers.settings.json").write_text('{"patience": 7}')
    assert distinct_configs(paths)[1] == {"mnist": "flowers"}
    (tmp_path / "dtd.settings.json").write_text("{patience")
    with pytest.raises(ValueError, match=r"dtd\.settings\.json: unreadable settings"):
        distinct_configs(paths)


def test_a_family_and_its_tuned_configurations_are_left_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """src and src-gray are one family; the column named src was tuned on src: never picked for either."""
    from portfolio.evaluate import held_out, lodo_regret

    matrix = {"src": {"src": 0.9, "other": 0.5, "x": 0.6}, "src-gray": {"src": 0.8, "other": 0.4, "x": 0.3},
              "other": {"src": 0.2, "other": 0.7, "x": 0.6}, "y": {"src": 0.9, "other": 0.1, "x": 0.5}}
    families = {"src": "src", "src-gray": "src"}
    others, allowed = held_out(matrix, "src-gray", families)
    assert others == ["other", "y"] and allowed == ["other", "x"]
    report = lodo_regret(matrix, lambda d, o, a: a[0], "first", families=families)
    assert report.picks["src"] == "other" and report.regrets["src"] == pytest.approx(0.6 - 0.5)  # oracle: x
    assert report.picks["y"] == "src"  # not of src's family: src's configuration is fair game
    derived = tmp_path / "derived.json"
    derived.write_text('[{"name": "src-gray", "source": "src", "derivation": "gray", "path": "p"}]')
    path = _write(tmp_path, matrix)
    (tmp_path / "meta.csv").write_text("dataset,a\nsrc,0\nsrc-gray,1\nother,2\ny,3\n")
    assert evaluate_main(["--matrix", path, "--meta-features", str(tmp_path / "meta.csv"), "--families",
                          str(derived), "--selector", "knn"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-family-out" in out and "| src-gray | other (" in out  # its nearest other family: other
    (tmp_path / "bad.json").write_text("{}")
    assert evaluate_main(["--matrix", path, "--meta-features", str(tmp_path / "meta.csv"), "--families",
                          str(tmp_path / "bad.json"), "--selector", "knn"]) == 2
    assert "bad.json: not a derived.json" in capsys.readouterr().err


def test_meta_features_from_a_fingerprint_store(tmp_path: Path) -> None:
    from fingerprint.extractor import ExtractorInfo
    from fingerprint.store import DatasetEntry, Store
    from portfolio.evaluate import store_meta_features

    info = ExtractorInfo(backbone="resnet18", weights="random-0", resolution=32, feature_dim=4)
    rng = np.random.default_rng(0)
    meta = {"classes": 3.0, "channels": 3.0, "height": 32.0, "width": 32.0, "train_size": 100.0,
            "sequence_length": 1.0, "multilabel": 0.0}
    store = Store(info, [DatasetEntry(f"d{i}", rng.normal(i, 1, (8, 4)), {**meta, "classes": 2.0 + i})
                         for i in range(4)])
    store.save(str(tmp_path / "s.npz"))
    table = store_meta_features(str(tmp_path / "s.npz"), components=2)
    assert list(table) == ["d0", "d1", "d2", "d3"] and all(len(v) == 6 + 2 for v in table.values())
    assert table["d1"][1] == pytest.approx(np.log(3.0))


def _two_cluster_store(tmp_path: Path) -> tuple[dict, Path]:
    """d0, d1 fingerprints near 0 and d2, d3 near 5 (8 dims); A wins on d0 and d1, B on d2 and d3."""
    from fingerprint.extractor import ExtractorInfo
    from fingerprint.store import DatasetEntry, Store

    info = ExtractorInfo(backbone="resnet18", weights="random-0", resolution=32, feature_dim=8)
    rng = np.random.default_rng(0)
    meta = {"classes": 3.0, "channels": 3.0, "height": 32.0, "width": 32.0, "train_size": 100.0,
            "sequence_length": 1.0, "multilabel": 0.0}
    centres = {"d0": 0.0, "d1": 0.3, "d2": 5.0, "d3": 5.3}
    store = Store(info, [DatasetEntry(d, rng.normal(c, 0.5, (80, 8)), meta) for d, c in centres.items()])
    store.save(str(tmp_path / "s.npz"))
    matrix = {"d0": {"A": 0.9, "B": 0.5}, "d1": {"A": 0.8, "B": 0.6}, "d2": {"A": 0.4, "B": 0.9},
              "d3": {"A": 0.3, "B": 0.7}}
    return matrix, tmp_path / "s.npz"


@pytest.mark.parametrize("selector", ["mlp_vote", "kmeans_vote"])
def test_fingerprint_selector_left_out_matches_the_nearest_family(tmp_path: Path, selector: str) -> None:
    from fingerprint.store import Store
    from portfolio.evaluate import fingerprint_picker, lodo_regret

    matrix, path = _two_cluster_store(tmp_path)
    store = Store.load(str(path))
    params = {"epochs": 8} if selector == "mlp_vote" else {}
    report = lodo_regret(matrix, fingerprint_picker(matrix, store, selector, params, repeats=3), selector)
    assert report.picks == {"d0": "A", "d1": "A", "d2": "B", "d3": "B"} and report.mean == 0.0
    # d0 and d1 one family: d0 is never matched with d1 (nor fitted on it), so it takes the other cluster's B
    families = {"d1": "d0"}
    report = lodo_regret(matrix, fingerprint_picker(matrix, store, selector, params, families, repeats=3), selector,
                         families=families)
    assert report.picks["d0"] == report.picks["d1"] == "B" and report.regrets["d0"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no vectors of dataset.*d9"):
        fingerprint_picker({**matrix, "d9": {"A": 0.1, "B": 0.2}}, store, selector)


def test_evaluate_defaults_to_the_selector_the_bundle_ships(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from portfolio.evaluate import shipped_selector
    from runtime.manifest import Manifest

    bundle = Path(__file__).resolve().parents[2] / "bundle"
    name, params = shipped_selector(str(bundle))
    assert name == Manifest.load(str(bundle)).info["selector"] and params["hidden"] > 0  # what meta-train recorded
    matrix, store = _two_cluster_store(tmp_path)
    path = _write(tmp_path, matrix)
    assert evaluate_main(["--matrix", path, "--store", str(store), "--repeats", "3", "--bundle", str(bundle),
                          "--params", '{"epochs": 8}']) == 0  # the shipped hyperparameters, fewer epochs
    out = capsys.readouterr().out
    assert f"| {name} | 0.0000 | 0.0000 | 4/4 |" in out and "| single best |" in out and "| 1-NN |" in out
    (tmp_path / "meta.csv").write_text("dataset,size\nd0,0\nd1,1\nd2,10\nd3,11\n")
    assert evaluate_main(["--matrix", path, "--meta-features", str(tmp_path / "meta.csv"), "--bundle", str(bundle)]) == 2
    assert f"--selector {name} reads fingerprints: give --store" in capsys.readouterr().err
    assert evaluate_main(["--matrix", path, "--store", str(store), "--bundle", str(tmp_path / "none")]) == 2
    assert "no --selector named and the bundle's cannot be read" in capsys.readouterr().err
    assert evaluate_main(["--matrix", path, "--store", str(store), "--selector", "knn", "--params", '{"k": 2}']) == 2
    assert "--params sets a fingerprint selector's hyperparameters" in capsys.readouterr().err
    assert evaluate_main(["--matrix", path, "--store", str(store), "--selector", "nearest"]) == 2
    assert "not one of knn, mapping, pairwise nor a registered fingerprint selector" in capsys.readouterr().err
