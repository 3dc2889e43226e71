"""The bundled portfolio committed in the repository (what the demo and an upload use) is complete."""

from __future__ import annotations

from pathlib import Path

from metadata.spec import AutoDLMetadata
from runtime.manifest import Manifest
from runtime.classifier import AnytimeClassifier
from runtime.settings import RuntimeSettings

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


def test_repository_bundle_loads(samples_dir: Path) -> None:
    manifest = Manifest.load(str(BUNDLE))  # every listed part exists
    assert manifest.configs and manifest.default in {*manifest.configs.values(), manifest.default}
    meta = AutoDLMetadata(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(meta, str(BUNDLE), RuntimeSettings())
    assert model.selector is not None and len(model.store) >= 8
    assert set(model.store.names) >= set(manifest.configs)
    assert model.unusable == {} and set(model.configs) == {manifest.default, *manifest.configs.values()}
    assert model.same_as == {}  # no two members run the same configuration (mnist.json was flowers.json)
