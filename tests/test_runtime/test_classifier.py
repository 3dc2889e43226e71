"""The bundle-backed classifier (runtime.classifier): the probe sample on class-sorted data, the time-capped
decode, the refit linear models, the grown validation set, a probe network apart from the fingerprint network,
settings files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from metadata.convert import convert_image_folders
from learner.config import TrainConfig
from metadata.reader import AutoDLDataset
from runtime.classifier import AnytimeClassifier
from runtime.manifest import FingerprintSpec
from runtime.settings import RuntimeSettings, load_settings
from tests.test_model.bundle_factory import make_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


def test_probe_sample_reads_on_when_the_data_is_sorted_by_class(samples_dir: Path) -> None:
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))  # stored sorted by class
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE), RuntimeSettings(probe_samples=16))
    x, y, complete = model.engine._read_probe_sample(train.get_dataset())
    assert len(x) == 64 and (y.sum(0) > 0).sum() >= 5


def test_the_first_sample_stops_on_time(samples_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))  # 82 samples, sorted by class
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE), RuntimeSettings(first_sample_seconds=1e-9))
    with caplog.at_level("INFO", logger="runtime.engine"):
        x, _, complete = model.engine._read_probe_sample(train.get_dataset())
    assert len(x) == 64 and not complete  # one decode batch, then the time was up (in the fourfold reread too)
    assert "first sample: 64 samples, read in the 0 s allowed" in caplog.text


@pytest.mark.parametrize("video_frames, kept", [(16, 16), (0, 20), (2, 4)])
def test_clips_are_kept_with_the_frames_their_readers_need(make_array_dataset, video_frames: int,
                                                           kept: int) -> None:
    """At most `video_frames` evenly spaced frames, but never fewer than a reader samples (the bundle's
    networks read 4 per clip); 0 keeps every frame."""
    out, _ = make_array_dataset("clips", n_train=10, n_test=4, shape=(20, 8, 8, 3))
    train = AutoDLDataset(str(out / "clips.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE), RuntimeSettings(video_frames=video_frames))
    model.train(train.get_dataset(), remaining_time_budget=600)  # the first answer: the sample is decoded
    predictions = model.test(AutoDLDataset(str(out / "clips.data/test")).get_dataset(), remaining_time_budget=600)
    assert predictions.shape == (4, 3)
    assert model.engine.sample_x.shape[:2] == (10, kept) and model.engine.test_x.shape[:2] == (4, kept)


def test_training_set_decode_is_capped_by_the_time_left(samples_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE), RuntimeSettings(probe_samples=64, config="default"))
    engine = model.engine
    model.train(train.get_dataset(), remaining_time_budget=600)
    engine.decode_rate = 0.1  # pretend decoding is slow: 0.25 of 600 s affords 15 samples
    with caplog.at_level("INFO", logger="runtime.engine"):
        x, _ = engine._decode_training_set(train.get_dataset(), available=600)
    total = train.get_metadata().size()
    assert f"decoding {engine.probe_count} of {total} training samples now" in caplog.text  # at least the probe sample
    assert engine._decoded.stream is not None and engine._decoded.grow
    assert len(x) == engine.probe_count - len(engine.val_idx)
    engine.decode_rate = 1e6  # fast: everything is cached
    x, _ = engine._decode_training_set(train.get_dataset(), available=600)
    assert engine._decoded.stream is None and len(x) == total - len(engine.val_idx)


def test_linear_models_are_refit_on_more_samples_when_time_allows(raw_dir: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    convert_image_folders(str(raw_dir / "mnist"), str(tmp_path / "digits"), max_per_class=30, progress=False)
    train = AutoDLDataset(str(tmp_path / "digits/digits.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE), RuntimeSettings(probe_samples=64, config="default",
                                                                                 val_samples=0, probe_inline=0.0))
    model.train(train.get_dataset(), remaining_time_budget=600)  # pixel model
    model.train(train.get_dataset(), remaining_time_budget=600)  # probe
    engine = model.engine
    assert engine.probe_count == 64 and {"pixels", "probe"} <= set(engine.predictors)
    x, y = engine._decode_training_set(train.get_dataset(), available=600)
    with caplog.at_level("INFO", logger="runtime.engine"):
        engine._refit(x, y, available=600)
    n = 300 - len(engine.val_idx)
    assert f"linear models refit on {n} samples" in caplog.text
    assert engine.predictors["probe-refit"].val_score > 0.5  # 10 digit classes, 255 samples
    assert engine.predictors["pixels-refit"].val_score > 0.5
    caplog.clear()
    engine.settings = RuntimeSettings(probe_samples=64, config="default", refit_samples=100)  # < 2 x 54: skipped
    with caplog.at_level("INFO", logger="runtime.engine"):
        engine._refit(x, y, available=600)
    assert "refit" not in caplog.text


def test_validation_grows_from_the_decoded_training_set(raw_dir: Path, tmp_path: Path) -> None:
    convert_image_folders(str(raw_dir / "mnist"), str(tmp_path / "digits"), max_per_class=60, progress=False)
    train = AutoDLDataset(str(tmp_path / "digits/digits.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(BUNDLE),
                              RuntimeSettings(probe_samples=64, config="default", val_samples=150, val_share=0.25,
                                              probe_inline=0.0))
    model.train(train.get_dataset(), remaining_time_budget=600)
    model.train(train.get_dataset(), remaining_time_budget=600)
    engine = model.engine
    before, answer = len(engine.val_y), engine.pending or engine.answer
    x, y = engine._decode_training_set(train.get_dataset(), available=600)
    left_x, left_y = engine._grow_validation(x, y, available=600)
    assert len(engine.val_y) == len(engine.val_x) == len(engine.val_features[engine.rung]) == 150
    assert len(left_x) + len(engine.val_y) == train.get_metadata().size() and len(left_x) == len(left_y)
    assert (engine.val_y.sum(0) >= 10).all()  # stratified: every digit is validated
    assert len(answer.val) == 150 and len(engine.predictors["probe"].val) == 150 and before < 150


def test_probe_network_apart_from_the_fingerprint_network(samples_dir: Path, tmp_path: Path) -> None:
    known = {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")}
    bundle = make_bundle(tmp_path / "b", known, probe=FingerprintSpec("mobilenet_v3_small", None, 40, seed=3))
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    test = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/test"))
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(probe_samples=64, select_late=False,
                                                                                 pixel_first=False))
    assert (model.extractor.info.backbone, model.probe_extractor.info.backbone) == ("resnet18", "mobilenet_v3_small")
    model.train(train.get_dataset(), remaining_time_budget=60)
    assert model.config.name == "cfg-miniciao" and model.match[0][0] == "miniciao"  # fingerprinted with ResNet18
    prediction = model.test(test.get_dataset(), remaining_time_budget=60)
    assert prediction.shape == (test.get_metadata().size(), 10) and np.isfinite(prediction).all()
    engine = model.engine
    assert engine.answer.recipe == {"probe": 1.0}  # the probe answers first when pixel_first is off
    features = engine._features_cache[engine.rung]
    assert features.shape[1] == 24 + 40 + 48 + 96  # MobileNetV3-small's pooled stages, not ResNet18's
    # validation and test: one storage resolution, miniciao's own 32 px (readers need up to 40)
    assert engine.test_x.shape[2] == engine.val_x.shape[2] == 32 < engine.probe_extractor.resolution


def test_settings_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.json").write_text(json.dumps({"probe_samples": 128, "patience": 2}))
    monkeypatch.delenv("AUTODL_SETTINGS", raising=False)
    monkeypatch.setenv("AUTODL_CONFIG", "default")
    settings = load_settings(str(tmp_path))
    assert (settings.probe_samples, settings.patience, settings.config) == (128, 2, "default")
    (tmp_path / "bad.json").write_text(json.dumps({"probes": 1}))
    monkeypatch.setenv("AUTODL_SETTINGS", str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match=r"bad\.json: unknown setting\(s\) probes"):
        load_settings(str(tmp_path))


def _with_member_settings(bundle: Path, config_file: str, settings: object) -> None:
    from runtime.manifest import Manifest

    manifest = Manifest.load(str(bundle))
    settings_file = config_file.replace(".json", ".settings.json")
    (bundle / settings_file).write_text(json.dumps(settings))
    manifest.settings = {config_file: settings_file}
    manifest.save(str(bundle))


def test_a_member_brings_its_own_settings_once_chosen(samples_dir: Path, tmp_path: Path) -> None:
    known = {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")}
    bundle = make_bundle(tmp_path / "b", known)
    _with_member_settings(bundle, "configs/cfg-miniciao.json", {"patience": 7, "growth": 1.2,
                                                                "probe_resolutions": [64]})
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(probe_samples=64, config="cfg-miniciao",
                                                                                 probe_share=0.0))
    engine = model.engine
    assert engine.settings.patience == 4  # the first answers use the bundle's settings
    for _ in range(3):
        model.train(train.get_dataset(), remaining_time_budget=120)
        model.test(train.get_dataset(), remaining_time_budget=120)
    assert engine.phase.value == "fine-tune" and engine.config.name == "cfg-miniciao"
    assert (engine.settings.patience, engine.settings.growth, engine.settings.probe_resolutions) == (7, 1.2, (64,))
    assert engine.base_settings.patience == 4


@pytest.mark.parametrize("settings, why", [({"cv_folds": 3}, "cv_folds act(s) before a configuration is chosen"),
                                           ({"patience": 0}, "The 'patience' setting must be"),
                                           ({"warp": 1}, "unknown setting(s) warp"),
                                           ([1, 2], "settings must be a JSON object")])
def test_a_member_with_bad_settings_cannot_run(samples_dir: Path, tmp_path: Path, settings: object, why: str) -> None:
    known = {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")}
    bundle = make_bundle(tmp_path / "b", known)
    _with_member_settings(bundle, "configs/cfg-Monkeys.json", settings)
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(probe_samples=64))
    reason = model.unusable["configs/cfg-Monkeys.json"]
    assert why in reason and "cfg-Monkeys.settings.json" in reason
    assert "configs/cfg-miniciao.json" in model.configs


def test_settings_of_a_configuration_the_manifest_does_not_use(samples_dir: Path, tmp_path: Path) -> None:
    from runtime.manifest import Manifest, ManifestError

    bundle = make_bundle(tmp_path / "b", {n: str(samples_dir / n) for n in ("miniciao", "Monkeys")})
    _with_member_settings(bundle, "configs/other.json", {"patience": 3})
    with pytest.raises(ManifestError, match="settings for configuration file.*configs/other.json"):
        Manifest.load(str(bundle))


def test_companion_networks_from_the_manifest(samples_dir: Path, tmp_path: Path) -> None:
    known = {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")}
    companion = FingerprintSpec("mobilenet_v3_small", None, 32, seed=5)
    bundle = make_bundle(tmp_path / "b", known, companions=(companion,))
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    test = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/test"))
    settings = RuntimeSettings(probe_samples=128, probe_resolutions=(32,), probe_flip=False, probe_first_seconds=0.0,
                               probe_share=0.9)
    model = AnytimeClassifier(train.get_metadata(), str(bundle), settings)
    assert model.engine.network_names == ["resnet18", "mobilenet_v3_small"]
    assert model.engine.extractors[1] is None  # built when first used, not within the constructor
    for _ in range(3):  # pixels, the probe, the probe with its companion
        model.train(train.get_dataset(), remaining_time_budget=600)
        prediction = model.test(test.get_dataset(), remaining_time_budget=600)
    assert "probe+mobilenet_v3_small" in model.engine.predictors and np.isfinite(prediction).all()
    # both networks' pooled stage outputs (ResNet18 128 + 256 + 512, MobileNetV3-small 24 + 40 + 48 + 96)
    assert model.engine.probes["probe+mobilenet_v3_small"][0].scaler_.n_features_in_ == 896 + 208
    assert model.engine.extractors[1].info.weights == "random-5"  # the manifest's network
    assert (model.engine.extractors[1].batch_activations == model.probe_extractor.batch_activations
            == settings.forward_activations)
    off = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(probe_companions="off",
                                                                               forward_activations=0))
    assert len(off.engine.extractors) == 1 and off.probe_extractor.batch_activations == 0
    assert off.extractor.batch_activations == 0
    # a companion whose weights file is missing makes the bundle unusable, naming the file
    spec = json.loads((bundle / "manifest.json").read_text())
    spec["companions"][0]["weights"] = "mobilenet_v3_small-lost.pt"
    (bundle / "manifest.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="mobilenet_v3_small-lost.pt: missing part"):
        AnytimeClassifier(train.get_metadata(), str(bundle), settings)


def test_stage_features_need_networks_that_declare_stages(samples_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.classifier
    from learner.backbones import get_spec

    bundle = make_bundle(tmp_path / "b", {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")})
    metadata = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train")).get_metadata()
    monkeypatch.setattr(runtime.classifier, "get_spec", lambda name: dataclasses.replace(get_spec(name), stages=()))
    with pytest.raises(ValueError, match="probe_features 'stages': the probe network 'resnet18' declares no stages"):
        AnytimeClassifier(metadata, str(bundle), RuntimeSettings())
    AnytimeClassifier(metadata, str(bundle), RuntimeSettings(probe_features="head"))  # the penultimate ones


def test_the_fingerprint_batch_depends_on_the_data_alone(samples_dir: Path, tmp_path: Path) -> None:
    """Selection draws its batch from a generator of its own: the bootstraps and refits before it (whose number
    depends on timing) must not change which configuration is chosen."""
    bundle = make_bundle(tmp_path / "b", {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")})
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(fingerprint_batch=8))
    x = np.random.default_rng(0).integers(0, 256, (40, 1, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[np.arange(40) % 10]
    batches: list[np.ndarray] = []
    extract = model.extractor.extract
    model.extractor.extract = lambda batch, **kw: batches.append(batch) or extract(batch, **kw)
    model._rank(x, y)
    model.engine.rng.random(100), model.engine.bootstrap_rng.integers(0, 9, 100)  # as decisions before it would
    model._rank(x, y)
    assert len(batches) == 2 and len(batches[0]) == 8 and np.array_equal(batches[0], batches[1])


def test_members_that_run_the_same_are_one_member(samples_dir: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Two files that differ only in the configuration's name (an old bundle's flowers.json = mnist.json) must
    not both be ranked: after a stall the time left would go to the configuration that has just stalled."""
    bundle = make_bundle(tmp_path / "b", {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")})
    default = TrainConfig.load(str(bundle / "configs/cfg-miniciao.json"))
    dataclasses.replace(default, name="cfg-Monkeys").save(str(bundle / "configs/cfg-Monkeys.json"))
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    x = np.random.default_rng(0).integers(0, 256, (40, 1, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[np.arange(40) % 10]
    with caplog.at_level("INFO"):
        model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(fingerprint_batch=8))
    assert model.same_as == {"configs/cfg-Monkeys.json": "configs/cfg-miniciao.json"}  # the default is kept
    assert "configs/cfg-Monkeys.json runs the same as configs/cfg-miniciao.json" in caplog.text
    assert [c.name for c in model._rank(x, y)] == ["cfg-miniciao"]
    # the same configuration with settings of its own is another member
    _with_member_settings(bundle, "configs/cfg-Monkeys.json", {"patience": 7})
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(fingerprint_batch=8))
    assert model.same_as == {} and sorted(c.name for c in model._rank(x, y)) == ["cfg-Monkeys", "cfg-miniciao"]


def test_a_configuration_file_no_known_dataset_maps_to_can_be_forced(samples_dir: Path, tmp_path: Path) -> None:
    """The committed bundle holds cifar10.json although no known dataset maps to it: forcing it ran into a
    KeyError; it is checked when forced, like the members are in the constructor."""
    bundle = make_bundle(tmp_path / "b", {name: str(samples_dir / name) for name in ("miniciao", "Monkeys")})
    TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=16, learning_rate=0.01,
                name="extra").save(str(bundle / "configs/extra.json"))
    (bundle / "configs/broken.json").write_text('{"backbone": "no-such-net"}')
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    model = AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(config="extra"))
    assert [c.name for c in model.engine.candidates] == ["extra"] and model.engine.select is None
    with pytest.raises(ValueError, match="forced configuration 'broken' cannot run: .*no-such-net"):
        AnytimeClassifier(train.get_metadata(), str(bundle), RuntimeSettings(config="broken"))
