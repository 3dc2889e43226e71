"""The offline pipeline end to end on a tiny profile: the pool, a derived family, BOHB over whole pipelines,
the matrix, leave-one-family-out selection and the bundled folder a Model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from portfolio import meta_train
from portfolio.derive import RECIPES, Derivation
from portfolio.matrix import read_matrix
from runtime.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about two minutes: BOHB, the matrix and the bundle end to end (`make test-all`)
def test_a_tiny_pipeline_profile_builds_a_leakage_free_bundle(raw_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = meta_train.Profile(max_per_class=8, video_clips_per_class=0, pretrain_minutes=0, store_samples=16,
                              tune_iterations=1, tune_min_budget=2, tune_max_budget=6, matrix_budget=3,
                              portfolio_size=2, max_samples=48, recipe="tiny", pipeline=True,
                              backbones=("efficientnet_lite0",), resolutions=(32,), tune_on=("dtd",),
                              matrix_max_samples=48, sources=("mnist", "dtd"),
                              default_config=(("backbone", "efficientnet_lite0"), ("weights", "imagenet"),
                                              ("resolution", 32)), probe_backbone="efficientnet_lite2",
                              probe_companions=("efficientnet_lite1",))
    monkeypatch.setitem(meta_train.PROFILES, "tiny", tiny)
    monkeypatch.setitem(RECIPES, "tiny", (Derivation("gray"),))
    work, out = tmp_path / "work", tmp_path / "bundle"
    (work / "weights").mkdir(parents=True)
    shutil.copy(REPO / "bundle" / "weights" / "efficientnet_lite0-imagenet.pt", work / "weights")  # no download
    assert meta_train.main(["--raw", str(raw_dir), "--work", str(work), "--out", str(out), "--profile", "tiny"]) == 0

    matrix = read_matrix(str(work / "matrix.csv"))
    assert set(matrix) == {"mnist", "dtd", "dtd-gray"}  # the sources and dtd's derived one (mnist is gray already)
    assert set(matrix["dtd"]) == {"dtd", "default"}  # the incumbent tuned on dtd, and the untuned pipeline
    assert all(v is not None and 0 <= v <= 1 for row in matrix.values() for v in row.values())
    # the incumbent is a whole pipeline: its run-time settings travel with it, within what a member may set
    settings = json.loads((work / "configs" / "dtd.settings.json").read_text())
    from runtime.settings import MEMBER_FIELDS

    assert set(settings) <= MEMBER_FIELDS
    report = (out / "report.md").read_text()
    assert "leave one family out" in report and "| pairwise |" in report and "| single best |" in report
    # dtd and dtd-gray are one family: the configuration tuned on dtd is never picked for either
    rows = {line.split(" | ")[0][2:]: line for line in report.splitlines() if line.startswith("| dtd")}
    assert "dtd (" not in rows["dtd"].split(" | ", 1)[1] and "dtd (" not in rows["dtd-gray"].split(" | ", 1)[1]
    manifest = Manifest.load(str(out))
    assert f"| {manifest.info['selector']} (bundled) |" in report  # the Model's own selection, left out too
    assert all(not w.endswith("-pool.pt") for w in (p.name for p in (out / "weights").iterdir()))  # ImageNet only
    assert manifest.fingerprint.backbone == "efficientnet_lite0" and manifest.info["profile"] == "tiny"
    # the probe reads the profile's probe network (here Lite2, not the fingerprint's Lite0), converted and bundled
    assert manifest.probe is not None and manifest.probe.backbone == "efficientnet_lite2"
    assert (out / "weights" / manifest.probe.weights).is_file()
    # and its companions, with the probe's side
    assert [(c.backbone, c.resolution) for c in manifest.companions] == [("efficientnet_lite1", manifest.probe.resolution)]
    assert (out / "weights" / manifest.companions[0].weights).is_file()
    for config, settings_file in manifest.settings.items():
        assert (out / settings_file).is_file() and config in manifest.configs.values() or config == manifest.default
