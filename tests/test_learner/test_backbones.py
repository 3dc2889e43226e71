"""Backbone registry, weights files, torchvision fetch path and the real EfficientNet-Lite0/1/2 weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from learner.backbones import (BackboneSpec, WeightsError, get_backbone, get_spec, list_backbones,
                               register_backbone)
from learner.weights import (convert_efficientnet_lite, fetch_torchvision_weights, lite_key_map, main as weights_main,
                             save_state_dict, weights_path)

REQUIRED = {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "inception_v3", "resnet18",
            "efficientnet_b0", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


def test_registry_has_the_required_backbones() -> None:
    assert REQUIRED <= set(list_backbones())
    assert list_backbones(include="mobilenet*") == ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]
    assert "resnet18" not in list_backbones(exclude="res*")


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_backbone_builds_with_the_right_shapes(name: str, channels: int) -> None:
    spec = get_spec(name)
    net = get_backbone(name, num_classes=7, random_init=True, in_channels=channels, dropout=0.3).eval()
    size = max(spec.min_size, 32)
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        out, feats = net(x), net.features(x)
    assert out.shape == (2, 7) and feats.shape == (2, spec.feature_dim)
    assert torch.isfinite(out).all()
    assert isinstance(net.head[0], torch.nn.Dropout) and net.head[0].p == 0.3
    if channels == 3:  # every registered backbone declares stages, and reading them leaves no hook behind
        with torch.no_grad():
            stages = net.stage_features(x)
        assert stages.shape[0] == 2 and stages.shape[1] > 0 and torch.isfinite(stages).all()
        assert not any(m._forward_hooks for m in net.modules())


def test_stage_features_pool_the_declared_stages() -> None:
    net = get_backbone("efficientnet_lite0", num_classes=2, random_init=True).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        h = net.body.bn1(net.body.conv_stem(net.normalize(x)))
        pooled = []
        for k, block in enumerate(net.body.blocks):
            h = block(h)
            if k >= 3:
                pooled.append(h.mean((2, 3)))
        stages = net.stage_features(x)
    assert stages.shape == (2, 80 + 112 + 192 + 320)
    torch.testing.assert_close(stages, torch.cat(pooled, 1))
    bare = get_backbone("resnet18", num_classes=2, random_init=True)
    object.__setattr__(bare, "spec", BackboneSpec("bare", lambda: torch.nn.Identity(), classifier="fc", feature_dim=1))
    with pytest.raises(ValueError, match="backbone 'bare' declares no stages"):
        bare.stage_features(torch.rand(1, 3, 32, 32))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg99'"):
        get_backbone("vgg99", num_classes=2, random_init=True)
    with pytest.raises(ValueError, match="no weights_file given; pass random_init=True"):
        get_backbone("resnet18", num_classes=2)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(BackboneSpec("resnet18", lambda: torch.nn.Identity(), classifier="fc", feature_dim=1))


def test_weights_round_trip_fp16(tmp_path: Path) -> None:
    net = get_backbone("mobilenet_v3_small", num_classes=3, random_init=True)
    path = save_state_dict(net.body.state_dict(), str(tmp_path / "w.pt"), fp16=True)
    loaded = get_backbone("mobilenet_v3_small", num_classes=5, weights_file=path)
    for (k, a), (_, b) in zip(net.body.state_dict().items(), loaded.body.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-3), k


def test_imagenet_style_file_with_classifier_loads(tmp_path: Path) -> None:
    """A torchvision state dict (1000-class classifier, inception's AuxLogits) loads; the head is new."""
    for name, model in (("resnet18", torchvision.models.resnet18()),
                        ("inception_v3", torchvision.models.inception_v3(aux_logits=True, init_weights=False))):
        path = save_state_dict(model.state_dict(), str(tmp_path / f"{name}.pt"))
        net = get_backbone(name, num_classes=4, weights_file=path)
        assert net.head[1].out_features == 4
        key = "layer1.0.conv1.weight" if name == "resnet18" else "Conv2d_1a_3x3.conv.weight"
        assert torch.equal(net.body.state_dict()[key], model.state_dict()[key])


def test_wrong_weights_are_rejected(tmp_path: Path) -> None:
    other = save_state_dict(torchvision.models.resnet18().state_dict(), str(tmp_path / "resnet.pt"))
    with pytest.raises(WeightsError, match=r"backbone 'mobilenet_v2': weights in .*resnet\.pt.* do not fit"):
        get_backbone("mobilenet_v2", num_classes=2, weights_file=other)
    with pytest.raises(WeightsError, match=r"backbone 'resnet18': weights file .*missing\.pt' not found"):
        get_backbone("resnet18", num_classes=2, weights_file=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot read weights file .*junk\.pt"):
        get_backbone("resnet18", num_classes=2, weights_file=str(tmp_path / "junk.pt"))
    wide = torchvision.models.resnet34().state_dict()
    with pytest.raises(WeightsError, match="do not fit"):
        get_backbone("resnet18", num_classes=2, weights_file=save_state_dict(wide, str(tmp_path / "r34.pt")))


def test_weights_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = save_state_dict(torchvision.models.resnet18().state_dict(), str(tmp_path / "r.pt"))
    assert weights_main(["check", "resnet18", path]) == 0
    assert weights_main(["check", "mobilenet_v2", path]) == 1
    assert "do not fit" in capsys.readouterr().err


def test_fetch_offline_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError, match=r"could not download resnet18 weights from https://.*needs internet"):
        fetch_torchvision_weights("resnet18", str(tmp_path))
    with pytest.raises(WeightsError, match="no torchvision weights.*convert-lite"):
        fetch_torchvision_weights("efficientnet_lite0", str(tmp_path))


def test_fetch_stores_what_torchvision_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = torchvision.models.mobilenet_v2().state_dict()
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, *a, **k: state)
    path = fetch_torchvision_weights("mobilenet_v2", str(tmp_path), fp16=True)
    assert path == weights_path(str(tmp_path), "mobilenet_v2", "imagenet")
    get_backbone("mobilenet_v2", num_classes=3, weights_file=path)


def test_lite_key_map_is_mechanical() -> None:
    keys = ["_conv_stem.weight", "_bn0.bias", "_blocks.0._depthwise_conv.weight", "_blocks.0._project_conv.weight",
            "_blocks.1._expand_conv.weight", "_blocks.2._bn2.running_mean", "_blocks.15._project_conv.weight",
            "_conv_head.weight", "_bn1.weight", "_fc.bias"]
    assert list(lite_key_map(keys).values()) == [
        "conv_stem.weight", "bn1.bias", "blocks.0.0.conv_dw.weight", "blocks.0.0.conv_pw.weight",
        "blocks.1.0.conv_pw.weight", "blocks.1.1.bn3.running_mean", "blocks.6.0.conv_pwl.weight",
        "conv_head.weight", "bn2.weight", "classifier.bias"]
    # Lite2's deeper stages (3, 3, 4, 4, 5 blocks): block 4 opens stage 2, block 20 is the last stage's
    assert list(lite_key_map(["_blocks.3._bn0.weight", "_blocks.4._expand_conv.weight", "_blocks.20._bn2.bias"],
                             "lite2").values()) == [
        "blocks.1.2.bn1.weight", "blocks.2.0.conv_pw.weight", "blocks.6.0.bn3.bias"]
    with pytest.raises(WeightsError, match="unknown EfficientNet-Lite variant 'lite9'"):
        lite_key_map(keys, "lite9")


@pytest.fixture(scope="module", params=["lite0", "lite1", "lite2"])
def lite_weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    variant = request.param
    return variant, convert_efficientnet_lite(str(tmp_path_factory.mktemp(variant)), variant, fp16=True)


def test_real_lite_weights_recognise_a_cat(lite_weights: tuple[str, str]) -> None:
    from skimage import data

    from learner import efficientnet_lite

    variant, path = lite_weights
    model = getattr(efficientnet_lite, f"efficientnet_{variant}")()  # ours, not timm's: the platform has no timm
    model.load_state_dict({k: v.float() for k, v in torch.load(path, weights_only=True).items()}, strict=True)
    image = torch.tensor(data.chelsea()).permute(2, 0, 1)[None].float() / 255.0
    image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = model.eval()((image - 0.5) / 0.5).softmax(1).topk(3).indices[0].tolist()
    assert all(281 <= k <= 285 for k in top), top  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("size", [32, 63, 64, 97, 224])
def test_our_lite_equals_timms_on_the_same_weights(lite_weights: tuple[str, str], size: int) -> None:
    """Same state-dict keys, same outputs (TF "same" padding on odd and even sides) as timm's model."""
    import timm

    from learner import efficientnet_lite

    variant, path = lite_weights
    state = {k: v.float() for k, v in torch.load(path, weights_only=True).items()}
    ours = getattr(efficientnet_lite, f"efficientnet_{variant}")().eval()
    theirs = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False).eval()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        assert torch.allclose(ours.forward_features(x), theirs.forward_features(x), atol=1e-5, rtol=1e-5)


def test_lite_registry_entries_take_the_converted_files(lite_weights: tuple[str, str]) -> None:
    variant, path = lite_weights
    net = get_backbone(f"efficientnet_{variant}", num_classes=3, weights_file=path)
    assert net.spec.mean == (0.5, 0.5, 0.5)
    with pytest.raises(WeightsError, match="do not fit"):  # another variant's file is refused
        get_backbone("efficientnet_lite2" if variant != "lite2" else "efficientnet_lite0", num_classes=3,
                     weights_file=path)


def test_tampered_lite0_source_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    fake.write_bytes(b"\x80\x02cos\nsystem\n.")
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        convert_efficientnet_lite(str(tmp_path), "lite0", source=str(fake))
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), [fake.name])


def test_convert_lite_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert weights_main(["convert-lite", "lite1", "--out", str(tmp_path), "--fp16"]) == 0
    assert "loads into efficientnet_lite1" in capsys.readouterr().out
    get_backbone("efficientnet_lite1", num_classes=2, weights_file=weights_path(str(tmp_path), "efficientnet_lite1",
                                                                               "imagenet"))
    # another variant's file is refused before it is unpickled
    lite2 = tmp_path / "efficientnet-lite2-9656183e.pth"
    lite2.write_bytes(b"not the real file")
    assert weights_main(["convert-lite", "lite2", "--out", str(tmp_path), "--source", str(lite2)]) == 1
    assert "does not match the expected 9656183e... of lite2" in capsys.readouterr().err
