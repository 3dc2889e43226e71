"""Pretraining on a union of AutoDL datasets produces weights that load into the backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from learner.backbones import get_backbone
from learner.pretrain import load_union, main as pretrain_main


def test_union_offsets_labels_and_channels(make_array_dataset) -> None:
    gray, _ = make_array_dataset("g", shape=(8, 8, 1), classes=2)
    rgb, _ = make_array_dataset("c", shape=(8, 8, 3), classes=3)
    x, y, names = load_union([str(gray), str(rgb)], resolution=16, max_per_dataset=None)
    assert names == ["g", "c"] and x.shape == (24, 1, 16, 16, 3) and y.shape == (24, 5)
    assert y[:12, 2:].sum() == 0 and y[12:, :2].sum() == 0 and (y.sum(1) == 1).all()


def test_pretrain_cli_writes_loadable_weights(make_array_dataset, tmp_path: Path, capsys) -> None:
    a, _ = make_array_dataset("a", shape=(16, 16, 3), classes=2, n_train=20)
    b, _ = make_array_dataset("b", shape=(12, 12, 1), classes=3, n_train=20, seed=5)
    out = tmp_path / "pre.pt"
    args = ["--dataset", str(a), str(b), "--backbone", "mobilenet_v3_small", "--minutes", "0.05",
            "--out", str(out), "--resolution", "32", "--fp16"]
    assert pretrain_main(args) == 0
    assert "saved" in capsys.readouterr().out
    net = get_backbone("mobilenet_v3_small", num_classes=4, weights_file=str(out))
    assert np.isfinite(next(net.body.parameters()).detach().numpy()).all()
    assert pretrain_main(args) == 2  # never overwrites
