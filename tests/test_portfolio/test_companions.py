"""`portfolio.companions`: adding and removing the probe's companion networks in a bundled portfolio."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learner.backbones import WeightsError, get_backbone
from learner.weights import save_state_dict
from portfolio.companions import add_companion, main, remove_companion
from runtime.manifest import FingerprintSpec, Manifest, ManifestError
from tests.test_model.bundle_factory import make_bundle


@pytest.fixture
def bundle(samples_dir: Path, tmp_path: Path) -> Path:
    known = {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")}
    return make_bundle(tmp_path / "b", known, probe=FingerprintSpec("mobilenet_v3_small", None, 40, frames=3))


def _weights(tmp_path: Path, backbone: str, seed: int) -> str:
    torch.manual_seed(seed)
    return save_state_dict(get_backbone(backbone, num_classes=1, random_init=True).body.state_dict(), str(tmp_path / f"{backbone}-{seed}.pt"))


def test_add_and_remove_a_companion(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = _weights(tmp_path, "resnet18", 0)
    stored = add_companion(str(bundle), "resnet18", weights)
    manifest = Manifest.load(str(bundle))
    assert manifest.companions == [FingerprintSpec("resnet18", "resnet18-imagenet.pt", 40, frames=3)]  # the probe's
    assert Path(stored).read_bytes() == Path(weights).read_bytes()
    assert "weights/resnet18-imagenet.pt" in manifest.files()
    with pytest.raises(ManifestError, match="resnet18 is a companion already"):
        add_companion(str(bundle), "resnet18", weights)
    assert main(["--portfolio", str(bundle)]) == 0
    assert "companion resnet18 (resnet18-imagenet.pt, 40 px, 3 frames)" in capsys.readouterr().out
    remove_companion(str(bundle), "resnet18")
    assert Manifest.load(str(bundle)).companions == [] and not Path(stored).exists()
    with pytest.raises(ManifestError, match="no companion 'resnet18'"):
        remove_companion(str(bundle), "resnet18")


def test_nothing_of_the_bundle_is_overwritten(bundle: Path, tmp_path: Path) -> None:
    mine = bundle / "weights" / "resnet18-imagenet.pt"
    mine.write_bytes(Path(_weights(tmp_path, "resnet18", 1)).read_bytes())
    before = mine.read_bytes()
    with pytest.raises(FileExistsError, match="resnet18-imagenet.pt: exists with other contents"):
        add_companion(str(bundle), "resnet18", _weights(tmp_path, "resnet18", 2))
    assert mine.read_bytes() == before and Manifest.load(str(bundle)).companions == []
    with pytest.raises(WeightsError, match="mobilenet_v3_small-3.pt"):  # weights of another network
        add_companion(str(bundle), "resnet18", _weights(tmp_path, "mobilenet_v3_small", 3))
    with pytest.raises(ValueError, match="--weights is needed for 'resnet18'"):
        add_companion(str(bundle), "resnet18")
    assert main(["--portfolio", str(bundle), "--add", "resnet18"]) == 1


def test_a_lite_companion_is_converted_from_its_package(bundle: Path) -> None:
    stored = add_companion(str(bundle), "efficientnet_lite1")
    assert Path(stored).name == "efficientnet_lite1-imagenet.pt"
    get_backbone("efficientnet_lite1", num_classes=1, weights_file=stored)
    assert [c.backbone for c in Manifest.load(str(bundle)).companions] == ["efficientnet_lite1"]
