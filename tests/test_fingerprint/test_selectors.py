"""Selectors on real images: four datasets of the pool, real ImageNet features (EfficientNet-Lite0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from fingerprint.evaluate import identification_curve, main as evaluate_main
from fingerprint.extract import build_store
from fingerprint.extractor import FeatureExtractor
from fingerprint.selectors import (BatchTooSmallError, get_selector, list_selectors, load_selector, register_selector,
                                   save_selector)
from fingerprint.store import Store
from learner.weights import convert_efficientnet_lite
from metadata.convert import convert_image_folders

# Class counts differ, as between real datasets: meta-features cannot tell apart datasets of identical
# shape (test_metafeatures_cannot_separate_identical_shapes).
POOL = {"mnist": "0,1,2", "cifar10": "airplane,cat,ship,truck", "flowers": "daisy,rose,tulip,sunflower,dandelion",
        "gtsrb": "00001,00002,00012,00013,00014,00025"}
FAST = {"mlp_vote": {"epochs": 20}, "mlp_moments": {"train_batches": 40, "epochs": 20}}
TINY = {"mlp_vote": {"epochs": 3}, "mlp_moments": {"train_batches": 20, "epochs": 3}}  # determinism needs no accuracy


@pytest.fixture(scope="module")
def store_path(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("pool")
    dirs = []
    for name, classes in POOL.items():
        out = root / name
        convert_image_folders(str(raw_dir / name), str(out), classes=classes.split(","), max_per_class=40,
                              progress=False)
        dirs.append(str(out))
    weights = convert_efficientnet_lite(str(root / "weights"), "lite0")
    extractor = FeatureExtractor("efficientnet_lite0", weights, resolution=64)
    path = str(root / "store.npz")
    build_store(dirs, extractor, samples=120, progress=False).save(path)
    return path


@pytest.mark.parametrize("name", ["kmeans_vote", "mlp_vote", "mlp_moments", "metafeatures_knn"])
def test_identifies_source_datasets(store_path: str, name: str) -> None:
    store = Store.load(store_path)
    assert store.names == list(POOL)
    rows = {r.batch_size: r for r in identification_curve(get_selector(name, **FAST.get(name, {})), store, (8, 64))}
    assert rows[64].accuracy >= 0.9, rows
    assert rows[64].accuracy >= rows[8].accuracy, rows


def test_meta_features_describe_the_datasets(store_path: str) -> None:
    meta = Store.load(store_path).entries
    assert meta["mnist"].meta["channels"] == 1 and meta["cifar10"].meta["channels"] == 3
    assert meta["flowers"].meta["height"] == 128 and meta["gtsrb"].meta["classes"] == 6


def test_metafeatures_cannot_separate_identical_shapes(store_path: str) -> None:
    store = Store.load(store_path)
    twin = store.entries["cifar10"]
    store.add(type(twin)("cifar10_twin", twin.features, dict(twin.meta)))
    ranking = dict(get_selector("metafeatures_knn").fit(store).rank(None, twin.meta))
    assert ranking["cifar10"] == ranking["cifar10_twin"] == 1.0


@pytest.mark.parametrize("name", ["kmeans_vote", "mlp_vote", "mlp_moments", "metafeatures_knn"])
def test_deterministic_clonable_and_saved_without_pickles(store_path: str, name: str, tmp_path: Path) -> None:
    store = Store.load(store_path)
    batch = store.entries["cifar10"].features[:16].astype(np.float32)
    meta = store.entries["cifar10"].meta
    first = get_selector(name, **TINY.get(name, {})).fit(store)
    second = clone(first).fit(store)
    assert first.rank(batch, meta) == second.rank(batch, meta)
    save_selector(first, str(tmp_path / "sel.npz"))
    loaded = load_selector(str(tmp_path / "sel.npz"))
    assert loaded.get_params() == first.get_params()
    for (a, sa), (b, sb) in zip(first.rank(batch, meta), loaded.rank(batch, meta)):
        assert a == b and sa == pytest.approx(sb, rel=1e-5)
    scores = [s for _, s in first.rank(batch, meta)]
    assert scores == sorted(scores, reverse=True)


def test_bad_input(store_path: str, tmp_path: Path) -> None:
    store = Store.load(store_path)
    with pytest.raises(ValueError, match="unknown selector 'oracle'"):
        get_selector("oracle")
    with pytest.raises(ValueError, match="selector 'kmeans_vote': .*unexpected keyword"):
        get_selector("kmeans_vote", n_trees=3)
    with pytest.raises(ValueError, match="already registered"):
        register_selector("mlp_vote")(type("X", (), {}))
    moments = get_selector("mlp_moments", **TINY["mlp_moments"]).fit(store)
    with pytest.raises(BatchTooSmallError, match="at least 2 samples, got 1"):
        moments.rank(np.zeros((1, 1280), np.float32))
    with pytest.raises(ValueError, match=r"batch must be \[B, 1280\]"):
        moments.rank(np.zeros((4, 512), np.float32))
    with pytest.raises(ValueError, match="pass meta="):
        get_selector("metafeatures_knn").fit(store).rank(None)
    with pytest.raises(ValueError, match="not a saved selector"):
        (tmp_path / "junk.npz").write_bytes(b"junk")
        load_selector(str(tmp_path / "junk.npz"))
    assert set(list_selectors()) >= {"kmeans_vote", "mlp_vote", "mlp_moments", "metafeatures_knn"}


def test_evaluate_cli(store_path: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--store", store_path, "--selector", "mlp_vote", "--params", json.dumps(FAST["mlp_vote"])]
    assert evaluate_main(args + ["--batch-sizes", "1,4,16", "--repeats", "5", "--plot", str(tmp_path / "f5.png")]) == 0
    out = capsys.readouterr().out
    assert "| 16 |" in out and "ms per selection" in out and (tmp_path / "f5.png").stat().st_size > 5000
    assert evaluate_main(args + ["--leave-one-out", "--repeats", "3", "--csv", str(tmp_path / "lodo.csv")]) == 0
    lines = (tmp_path / "lodo.csv").read_text().splitlines()
    assert lines[0] == "dataset,selected,share" and len(lines) == 5
    for line in lines[1:]:
        dataset, selected, _ = line.split(",")
        assert dataset != selected and selected in POOL  # a dataset is never matched with itself
    assert evaluate_main(["--store", str(tmp_path / "none.npz"), "--selector", "mlp_vote"]) == 2
    assert "store file not found" in capsys.readouterr().err
