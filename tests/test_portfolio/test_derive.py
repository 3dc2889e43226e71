"""Derived known datasets: each kind, the recipe, determinism, hold-outs and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from portfolio.derive import RECIPES, Derivation, Splits, derive, derive_all, list_derivations, main, read_splits


@pytest.fixture
def sources(make_array_dataset) -> dict[str, str]:
    color, _ = make_array_dataset("color", n_train=24, n_test=8, shape=(20, 20, 3), classes=4)
    gray, _ = make_array_dataset("gray", n_train=24, n_test=8, shape=(20, 20, 1), classes=4, seed=5)
    return {"color": str(color), "gray": str(gray)}


def test_each_kind(sources: dict[str, str]) -> None:
    splits = read_splits(sources["color"], size=20)
    assert splits.x_train.shape == (24, 1, 20, 20, 3) and splits.y_test.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    subset = derive(splits, Derivation("classes", (("share", 0.5),)), "color-classes")
    assert set(subset.y_train) == set(subset.y_test) == {0, 1} and len(subset.y_train) == 12
    few = derive(splits, Derivation("shots", (("per_class", 2),)), "color-shots")
    assert np.bincount(few.y_train).tolist() == [2, 2, 2, 2] and len(few.y_test) == 8
    low = derive(splits, Derivation("lowres", (("size", 8),)), "color-lowres")
    assert low.x_train.shape == (24, 1, 8, 8, 3) and low.x_train.dtype == np.uint8
    gray = derive(splits, Derivation("gray"), "color-gray")
    assert gray.x_train.shape == (24, 1, 20, 20, 1)
    flat = Splits(np.full((2, 1, 4, 4, 3), 200, np.uint8), np.array([0, 1]), np.full((2, 1, 4, 4, 3), 200, np.uint8),
                  np.array([0, 1]))
    assert (derive(flat, Derivation("gray"), "flat-gray").x_train == 200).all()  # luminance of a gray pixel
    clips = derive(splits, Derivation("clips", (("frames", 3), ("size", 10))), "color-clips")
    assert clips.x_train.shape == (24, 3, 10, 10, 3) and clips.x_test.shape == (8, 3, 10, 10, 3)
    assert set(list_derivations()) >= {"classes", "shots", "lowres", "gray", "clips"}


def test_kinds_that_do_not_apply(sources: dict[str, str]) -> None:
    gray = read_splits(sources["gray"], size=20)
    assert derive(gray, Derivation("gray"), "gray-gray") is None
    assert derive(gray, Derivation("lowres", (("size", 32),)), "gray-lowres") is None
    assert derive(gray, Derivation("shots", (("per_class", 100),)), "gray-shots") is None
    with pytest.raises(ValueError, match="unknown derivation 'mirror'"):
        Derivation("mirror")


@pytest.mark.slow  # derives every recipe twice: 10 s (`make test-all`)
def test_derive_all_is_deterministic_and_holds_out(sources: dict[str, str], tmp_path: Path) -> None:
    recipe = (Derivation("classes", (("share", 0.5),)), Derivation("gray"), Derivation("lowres", (("size", 8),)))
    first = derive_all(sources, str(tmp_path / "a"), recipe=recipe, size=20, progress=False)
    assert [e["name"] for e in first] == ["color-classes-0.5", "color-gray", "color-lowres-8",
                                          "gray-classes-0.5", "gray-lowres-8"]  # no gray of gray data
    again = derive_all(sources, str(tmp_path / "b"), recipe=recipe, size=20, progress=False)
    for a, b in zip(first, again):
        x, y = read_splits(a["path"], 20), read_splits(b["path"], 20)
        assert np.array_equal(x.x_train, y.x_train) and np.array_equal(x.y_test, y.y_test)
    held = derive_all(sources, str(tmp_path / "c"), recipe=recipe, holdout=("gray",), size=20, progress=False)
    assert {e["source"] for e in held} == {"color"}
    assert json.loads((tmp_path / "c" / "derived.json").read_text()) == held
    with pytest.raises(ValueError, match="--holdout names no source: nope"):
        derive_all(sources, str(tmp_path / "d"), recipe=recipe, holdout=("nope",), progress=False)


def test_the_default_recipe_gives_five_per_color_source() -> None:
    assert len(RECIPES["default"]) == 5 and len({d.suffix for d in RECIPES["default"]}) == 5


def test_cli_resumes(sources: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "sources"
    root.mkdir()
    for name, path in sources.items():
        (root / name).symlink_to(path)
    out = tmp_path / "derived"
    assert main(["--sources", str(root), "--out", str(out), "--holdout", "gray", "--size", "20"]) == 0
    written = json.loads((out / "derived.json").read_text())
    assert len(written) == 4 and all(Path(e["path"]).is_dir() for e in written)  # 6 per class: no 10 shots
    stamp = {e["name"]: Path(e["path"]).stat().st_mtime for e in written}
    assert main(["--sources", str(root), "--out", str(out), "--holdout", "gray", "--size", "20"]) == 0
    assert {e["name"]: Path(e["path"]).stat().st_mtime for e in written} == stamp  # kept, not rewritten
