"""A small but real bundled portfolio, built from scratch for the Model tests (no weights files)."""

from __future__ import annotations

from pathlib import Path

from fingerprint.extract import build_store
from fingerprint.extractor import FeatureExtractor
from fingerprint.selectors import get_selector, save_selector
from learner.config import TrainConfig
from runtime.manifest import FingerprintSpec, Manifest


def make_bundle(folder: Path, known: dict[str, str], *, resolution: int = 32,
                probe: FingerprintSpec | None = None, companions: tuple[FingerprintSpec, ...] = ()) -> Path:
    """`known`: dataset name -> AutoDL dataset folder; one random-init configuration per dataset;
    `probe`: a probe network other than the fingerprint network (seeded random weights); `companions`: the
    probe's companion networks."""
    (folder / "configs").mkdir(parents=True)
    (folder / "weights").mkdir()
    extractor = FeatureExtractor("resnet18", None, resolution=resolution)
    store = build_store(list(known.values()), extractor, samples=40, progress=False)
    store.save(str(folder / "store.npz"))
    save_selector(get_selector("mlp_vote", epochs=10).fit(store), str(folder / "selector.npz"))
    configs = {}
    for i, name in enumerate(store.names):
        TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=resolution, batch_size=32,
                    learning_rate=1e-3 * (i + 1), name=f"cfg-{name}").save(str(folder / "configs" / f"cfg-{name}.json"))
        configs[name] = f"configs/cfg-{name}.json"
    Manifest(fingerprint=FingerprintSpec("resnet18", None, resolution), store="store.npz", selector="selector.npz",
             configs=configs, default=next(iter(configs.values())), unsafe=[], info={"test": True},
             probe=probe, companions=list(companions)).save(str(folder))
    return folder
