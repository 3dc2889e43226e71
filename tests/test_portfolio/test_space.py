"""The search space and its mapping to configuration records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torchvision

from learner.config import TrainConfig
from learner.weights import save_state_dict
from portfolio.space import available_models, build_space, to_train_config


def test_every_sampled_configuration_maps_to_a_valid_record() -> None:
    models = ["inception_v3:imagenet", "mobilenet_v3_small:random", "efficientnet_lite0:imagenet"]
    space = build_space(models, resolutions=(64, 96), video=True, seed=3)
    for i, sample in enumerate(space.sample_configuration(200)):
        config = to_train_config(sample, name=f"c{i}")
        assert isinstance(config, TrainConfig)
        assert not (config.backbone == "inception_v3" and config.resolution < 75)  # forbidden clause
        assert config.optimizer in ("adam", "sgd") and config.batch_size in (16, 32, 64, 128)
        assert 1e-5 <= config.learning_rate <= 0.5 and 0.01 <= config.dropout <= 0.99
        assert (config.weights is None) == (config.backbone == "mobilenet_v3_small")


def test_space_without_video_has_no_frame_knobs() -> None:
    names = set(build_space(["resnet18:random"]).keys())
    assert names == {"model", "optimizer", "batch_size", "learning_rate", "dropout", "resolution"}


def test_available_models_from_weights_files(tmp_path: Path) -> None:
    save_state_dict(torchvision.models.resnet18().state_dict(), str(tmp_path / "resnet18-imagenet.pt"))
    save_state_dict({}, str(tmp_path / "resnet18-pool.pt"))
    (tmp_path / "notes.txt").write_text("x")
    assert available_models(str(tmp_path), ["resnet18", "mobilenet_v2"]) == ["resnet18:imagenet", "resnet18:pool"]
    assert "mobilenet_v2:random" in available_models(str(tmp_path), ["resnet18", "mobilenet_v2"], allow_random=True)
    with pytest.raises(ValueError, match="no model to tune"):
        available_models(str(tmp_path), ["efficientnet_b0"])


def test_a_pipeline_configuration_sets_the_run_time_engine() -> None:
    from runtime.settings import RuntimeSettings
    from portfolio.space import RUNTIME_KNOBS, to_runtime_settings

    space = build_space(["resnet18:random"], pipeline="all", seed=1)
    assert {f"rt:{name}" for name in RUNTIME_KNOBS} <= set(space.keys())
    seen = set()
    for sample in space.sample_configuration(100):
        settings = to_runtime_settings(sample)
        assert isinstance(settings, RuntimeSettings) and to_train_config(sample).backbone == "resnet18"
        seen.add(settings.probe_resolutions)
        assert settings.probe_resolutions[0] == 64 and settings.cv_folds in (0, 3, 5)
    assert seen == {(64,), (64, 128), (64, 128, 224)}
    # a member's pipeline: only the knobs the Model applies once a member is chosen
    member = build_space(["resnet18:random"], pipeline=True, seed=1)
    knobs = {k[3:] for k in member.keys() if k.startswith("rt:")}
    assert knobs == {name for name, k in RUNTIME_KNOBS.items() if k.member} and "probe_top" in knobs
    assert not knobs & {"cv_folds", "pixel_first"}
    with pytest.raises(ValueError, match="pipeline must be"):
        build_space(["resnet18:random"], pipeline="some")
    # the defaults are today's behaviour, and a plain configuration leaves the settings alone
    assert to_runtime_settings(space.get_default_configuration()) == RuntimeSettings()
    assert to_runtime_settings({"model": "resnet18:random"}) == RuntimeSettings()
    with pytest.raises(ValueError, match="unknown run-time knob 'warp'"):
        to_runtime_settings({"rt:warp": "on"})


def test_a_run_time_knob_with_an_invalid_choice_is_refused() -> None:
    from portfolio.space import RuntimeKnob, register_runtime_knob

    with pytest.raises(ValueError, match="The 'patience' setting must be"):
        register_runtime_knob(RuntimeKnob("bad_patience", ("0", "1"), "1", lambda c: {"patience": int(c)}))
    with pytest.raises(ValueError, match="already registered"):
        register_runtime_knob(RuntimeKnob("blend", ("on",), "on", lambda c: {}))
