"""The anytime engine alone: its phases on one clock, and its fault boundary."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fingerprint.extractor import FeatureExtractor
from learner.config import TrainConfig
from learner.data import DEFAULT_FORWARD_ACTIVATIONS
from metadata.arrays import Arrays, read_on, to_arrays
from metadata.reader import AutoDLDataset
from runtime.engine import PROBE_MAX_ITER, AnytimeEngine, Answer, Phase, _Predictor, pixel_features
from runtime import engine as engine_module
from runtime.settings import RuntimeSettings
from scoring.metrics import nauc

CONFIG = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=16, name="tiny")


def _engine(n: int, candidates: list[TrainConfig], companions: tuple = (), **settings: object) -> AnytimeEngine:
    return AnytimeEngine(num_classes=3, train_size=n, probe_extractor=FeatureExtractor("mobilenet_v3_small", None,
                                                                                       resolution=32),
                         companions=companions, candidates=candidates, storage_resolution=32,
                         # no better probe rung unless a test asks for one: whether one is affordable depends on
                         # this machine's speed, and the phase tests must not
                         settings=RuntimeSettings(**{"first_slice": 1.0, "probe_inline": 0.0, "probe_share": 0.0,
                                                     **settings}))


@pytest.fixture
def data(make_array_dataset) -> tuple[AutoDLDataset, AutoDLDataset]:
    folder, _ = make_array_dataset("engine", n_train=60, n_test=9, shape=(16, 16, 3), classes=3)
    return (AutoDLDataset(str(folder / "engine.data/train")), AutoDLDataset(str(folder / "engine.data/test")))


def test_phases_follow_the_schedule(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG])
    assert engine.phase is Phase.FIRST_ANSWER and not engine.done_training
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.PROBE and engine.pending.recipe == {"pixels": 1.0} and engine.probe is None
    first = engine.test(test.get_dataset(), remaining_time_budget=59)
    assert first.shape == (9, 3) and first.dtype == np.float32 and engine.answer.recipe == {"pixels": 1.0}
    engine.train(train.get_dataset(), remaining_time_budget=59)
    assert engine.phase is Phase.PREPARE and "probe" in engine.predictors and engine.trainer is None
    engine.test(test.get_dataset(), remaining_time_budget=58)
    engine.train(train.get_dataset(), remaining_time_budget=58)
    assert engine.phase is Phase.FINE_TUNE and engine.trainer.total_steps > 0 and engine.rounds == 1
    assert "network-1" in engine.predictors
    # the time after a slice (validation and decision) is kept in reserve with the next test's
    assert engine.decide_seconds > 0
    before = engine._reserve()
    engine.decide_seconds += 2.0
    assert engine._reserve() == pytest.approx(before + 3.0)
    engine.decide_seconds -= 2.0
    assert engine.trainer.batch_activations == engine.settings.forward_activations == DEFAULT_FORWARD_ACTIVATIONS
    side = engine.resolution  # one storage resolution
    assert engine.test_x.shape[1:] == (1, side, side, 3) == engine.val_x.shape[1:] == engine.train_data.x.shape[1:]
    engine.test(test.get_dataset(), remaining_time_budget=50)
    engine.train(train.get_dataset(), remaining_time_budget=7.0)  # too little left beyond the reserve
    assert engine.done_training and engine.faults == []


@pytest.mark.parametrize("store_native, native_size, train_size, side", [
    (True, (-1, -1), 100, 24), (True, (-1, -1), 60, 24), (True, (12, 16), 100, 16), (True, (40, 60), 100, 48),
    (False, (-1, -1), 100, 48)])
def test_inputs_are_stored_at_most_at_the_images_own_size(data: tuple[AutoDLDataset, AutoDLDataset],
                                                          monkeypatch: pytest.MonkeyPatch, store_native: bool,
                                                          native_size: tuple[int, int], train_size: int,
                                                          side: int) -> None:
    train, test = data  # 16 px images, readers need up to 48 px
    peeked = []
    real = engine_module.max_side
    monkeypatch.setattr(engine_module, "max_side",
                        lambda source, n, max_seconds, enough: peeked.append(n) or real(source, n, max_seconds, enough))
    engine = AnytimeEngine(num_classes=3, train_size=train_size, candidates=[CONFIG], storage_resolution=48,
                           probe_extractor=FeatureExtractor("mobilenet_v3_small", None, resolution=32),
                           native_size=native_size,
                           settings=RuntimeSettings(store_native=store_native, probe_resolutions=(24, 48),
                                                    probe_first_seconds=0.0, probe_share=0.0))
    engine.train(train.get_dataset(), remaining_time_budget=60)
    engine.test(test.get_dataset(), remaining_time_budget=59)
    assert engine.resolution == side and engine.sample_x.shape[2:4] == engine.test_x.shape[2:4] == (side, side)
    # the metadata's size is trusted; an unknown one is read from the first samples (16 px) and not taken below
    # the first rung's side (24 px), by a peek, or by the first read itself when that reads the whole training set
    # (at most PEEK_SAMPLES); off: nothing is read
    peek = store_native and native_size == (-1, -1) and train_size > engine_module.PEEK_SAMPLES
    assert peeked == ([engine_module.PEEK_SAMPLES] if peek else [])
    engine.train(train.get_dataset(), remaining_time_budget=59)  # the probe reads the stored inputs at its 24 px
    assert "probe" in engine.predictors and engine.rung[0] == 24 and engine.faults == []


def test_a_small_training_set_of_varying_sizes_is_measured_by_its_first_read(
        make_array_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """No peek: the first read, at the readers' side, measures the images (20 px, one of 22 px) and what it read
    is resized down to the side measured; the test set is read at that side."""
    folder, _ = make_array_dataset("vary", n_train=60, n_test=9, shape=(32, 32, 3), classes=3)
    train, test = (AutoDLDataset(str(folder / f"vary.data/{split}")) for split in ("train", "test"))

    def crop(i: tf.Tensor, element: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        side = 20 + 2 * tf.cast(tf.equal(i, 50), tf.int32)
        return element[0][:, :side, :side], element[1]

    varying = train.get_dataset().enumerate().map(crop)
    assert varying.element_spec[0].shape[-3] is None
    monkeypatch.setattr(engine_module, "max_side", lambda *args, **kwargs: pytest.fail("peeked"))
    engine = AnytimeEngine(num_classes=3, train_size=60, candidates=[CONFIG], storage_resolution=48,
                           probe_extractor=FeatureExtractor("mobilenet_v3_small", None, resolution=32),
                           settings=RuntimeSettings(probe_resolutions=(16, 48), probe_first_seconds=0.0,
                                                    probe_share=0.0))
    engine.train(varying, remaining_time_budget=60)
    engine.test(test.get_dataset(), remaining_time_budget=59)
    assert engine.resolution == 22 and engine.sample_x.shape == (60, 1, 22, 22, 3)
    assert engine.test_x.shape[2:4] == (22, 22)
    direct = to_arrays(varying, size=(22, 22)).x.astype(np.float32)
    # enlarged to 48 px and brought down without antialiasing: close to a direct read (random pixels, the worst
    # case: a mean absolute difference of 3.0 of 255; with antialiasing 12.3; hoda's digits 0.12)
    assert np.abs(engine.sample_x.astype(np.float32) - direct).mean() < 4.0
    engine.train(varying, remaining_time_budget=59)
    assert "probe" in engine.predictors and engine.faults == []


def test_a_first_read_that_stopped_early_is_resized_with_what_it_left() -> None:
    """Clips cut by the first read's time cap: the side it measured (not below the first rung's) holds for the
    samples read after it too."""
    engine = _engine(30, [CONFIG])
    rung = engine._rung_options()[-1][0]
    side = 2 * rung
    engine._native_from_read, engine.resolution = True, side
    y = np.eye(3, dtype=np.float32)
    later = [(np.full((2, 1, side, side, 3), 7, np.uint8), y[[0, 1]]),
             (np.full((1, 1, side, side, 3), 9, np.uint8), y[[2]])]
    part = Arrays(x=np.zeros((4, 1, side, side, 3), np.uint8), y=y[[0, 1, 2, 0]], complete=False, native_side=20,
                  rest=iter(later))
    settled = engine._settle_native(part)
    assert engine.resolution == rung and not engine._native_from_read and settled.x.shape == (4, 1, rung, rung, 3)
    more = read_on(settled, 10)
    assert more.x.shape == (7, 1, rung, rung, 3) and more.complete and more.x[4:6].max() == more.x[4:6].min() == 7
    assert engine._settle_native(part) is part  # once only
    engine._native_from_read = True
    unmeasured = replace(part, complete=True, native_side=0)  # our reader, images of varying size: not measured
    assert engine._settle_native(unmeasured) is unmeasured and engine.resolution == rung


def test_without_the_pixel_model_the_probe_answers_first(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], pixel_first=False, probe_share=0.0)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.PREPARE and engine.pending.recipe == {"probe": 1.0}
    assert engine.test(test.get_dataset(), remaining_time_budget=59).shape == (9, 3)


def test_a_probe_first_answer_climbs_rungs_later(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    # regression: with a better rung affordable the engine stayed in FIRST_ANSWER and started over
    train, test = data
    engine = _engine(60, [CONFIG], pixel_first=False, probe_resolutions=(32, 48), probe_first_seconds=0.0,
                     probe_share=0.9)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.PROBE and engine.rung == (32, False, 0) and engine.pending.recipe == {"probe": 1.0}
    engine.test(test.get_dataset(), remaining_time_budget=59)
    engine.train(train.get_dataset(), remaining_time_budget=59)
    assert engine.rung == (48, False, 0) and "probe@48" in engine.predictors and engine.faults == []  # one side up


def test_a_cheap_probe_joins_the_first_answer(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_inline=1e6, probe_share=0.0)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.PREPARE and {"pixels", "probe"} <= set(engine.predictors)
    assert engine.test(test.get_dataset(), remaining_time_budget=59).shape == (9, 3)


def test_a_slow_first_sample_answers_early_and_reads_on(make_array_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_array_dataset("early", n_train=200, n_test=9, shape=(16, 16, 3), classes=3)
    train, test = (AutoDLDataset(str(folder / f"early.data/{split}")).get_dataset() for split in ("train", "test"))
    reads = []
    real = engine_module.to_arrays
    monkeypatch.setattr(engine_module, "to_arrays", lambda source, **kw: reads.append(source) or real(source, **kw))
    engine = _engine(200, [CONFIG], first_answer_seconds=1e-9)  # time is up after the first decode batch (64)
    engine.train(train, remaining_time_budget=60)
    assert engine.phase is Phase.FIRST_ANSWER and engine.pending.recipe == {"pixels-first": 1.0}
    assert engine.pending.val is None and len(engine.first_part) == 64
    first = engine.test(test, remaining_time_budget=59)
    assert first.shape == (9, 3) and np.isfinite(first).all()
    engine.train(train, remaining_time_budget=59)  # reads on: the whole training set, then pixels and the probe
    whole = real(train, size=(engine.resolution,) * 2)
    np.testing.assert_array_equal(engine.sample_x, whole.x)
    np.testing.assert_array_equal(engine.sample_y, whole.y)
    assert reads == [train, test]  # one read of the training set over both calls: nothing decoded twice
    assert {"pixels", "probe"} <= set(engine.predictors) and engine.cv_folds  # all of it: cross-validated
    assert "pixels-first" not in engine.pending.recipe and engine.pending.val is not None  # validated: it replaced
    engine.test(test, remaining_time_budget=58)
    assert engine.answer is not None and engine.faults == []
    # in time, or off: the whole first sample first, as before
    for settings in ({"first_answer_seconds": 60.0}, {"first_answer_seconds": 0.0}):
        engine = _engine(200, [CONFIG], **settings)
        engine.train(train, remaining_time_budget=60)
        assert engine.phase is Phase.PROBE and engine.pending.recipe == {"pixels": 1.0} and len(engine.sample_x) == 200


def test_no_time_to_fine_tune_ends_after_the_linear_models(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG])
    for remaining in (10, 9):
        engine.train(train.get_dataset(), remaining_time_budget=remaining)
        engine.test(test.get_dataset(), remaining_time_budget=remaining)
    engine.train(train.get_dataset(), remaining_time_budget=6)  # reserve 5 s + 1.5 x test: < 2 first slices
    assert engine.done_training and engine.trainer is None


def test_a_failing_prediction_keeps_the_last_valid_answer(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG, CONFIG])
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=60)
        answer = engine.test(test.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.FINE_TUNE

    def broken() -> np.ndarray:
        raise MemoryError("out of memory")

    network = engine.predictors["network-1"]
    network.make_test, network.test = broken, None
    engine.pending = Answer({"network-1": 1.0}, network.val, 1.0, label="network-1")
    assert np.array_equal(engine.test(test.get_dataset(), remaining_time_budget=60), answer)
    assert [f.error for f in engine.faults] == ["MemoryError: out of memory"] and engine.trainer is None
    assert engine.phase is Phase.PREPARE and len(engine.candidates) == 1  # the next configuration is tried


def test_without_candidates_the_linear_models_answer_alone(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [])
    engine.train(train.get_dataset(), remaining_time_budget=60)
    engine.test(test.get_dataset(), remaining_time_budget=60)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.done_training and engine.test(test.get_dataset(), remaining_time_budget=60).shape == (9, 3)


def test_selection_failure_keeps_the_candidates(data: tuple[AutoDLDataset, AutoDLDataset],
                                                caplog: pytest.LogCaptureFixture) -> None:
    train, _ = data
    engine = _engine(60, [CONFIG], select_late=False)

    def select(x: np.ndarray, y: np.ndarray) -> list[TrainConfig]:
        raise ValueError("selector broken")

    engine.select = select
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.config is CONFIG and "selection failed (selector broken)" in caplog.text


def _decisions(switch_confidence: float = 0.8) -> AnytimeEngine:
    """An engine with a 400-sample two-class validation set and a current answer that scores NAUC 0.6."""
    engine = _engine(60, [CONFIG], switch_confidence=switch_confidence)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    engine.val_y = np.eye(2, dtype=np.float32)[labels]
    noise = rng.normal(size=400)
    current = np.stack([1 - (labels + 2 * noise), labels + 2 * noise], 1)
    engine.answer = Answer({"probe": 1.0}, current, engine._val_score(current), test=np.zeros((5, 2)), label="probe")
    return engine


def _challenger(engine: AnytimeEngine, name: str, signal: float, seed: int) -> None:
    labels = engine.val_y.argmax(1)
    score = signal * labels + np.random.default_rng(seed).normal(size=len(labels))
    val = np.stack([-score, score], 1)
    engine.predictors[name] = _Predictor(name, val, lambda: np.zeros((5, 2)), engine._val_score(val))


def test_a_challenger_replaces_the_answer_only_when_surely_better() -> None:
    engine = _decisions()
    engine.settings = RuntimeSettings(blend=False)
    base = engine.answer.score
    jitter = engine.answer.val + np.random.default_rng(1).normal(scale=0.3, size=engine.answer.val.shape)
    engine.predictors["network-1"] = _Predictor("network-1", jitter, lambda: np.zeros((5, 2)),
                                                engine._val_score(jitter))
    engine._consider(["network-1"], prefer_new=False)  # the answer plus noise: a difference within the noise
    assert engine.pending is None
    _challenger(engine, "network-2", 0.5, seed=1)  # as good as the answer, with independent errors
    engine.settings = RuntimeSettings(blend=True)  # their blend is better than either
    engine._consider(["network-2"], prefer_new=False)
    assert engine.pending is not None and set(engine.pending.recipe) == {"probe", "network-2"}
    engine.pending = None
    _challenger(engine, "network-3", 3.0, seed=2)  # clearly better
    engine._consider(["network-3"], prefer_new=False)
    assert engine.pending is not None and "network-3" in engine.pending.recipe and engine.pending.score > base + 0.2


def test_better_informed_models_replace_the_answer_unless_surely_worse() -> None:
    engine = _decisions()
    _challenger(engine, "probe-refit", 0.5, seed=3)  # slightly worse or equal on validation: taken anyway
    engine._consider(["probe-refit"], prefer_new=True)
    assert engine.pending is not None
    engine.pending = None
    _challenger(engine, "pixels", 0.0, seed=4)  # no signal at all: surely worse, and no blend helps
    engine.settings = RuntimeSettings(blend=False)
    engine._consider(["pixels"], prefer_new=True)
    assert engine.pending is None


def test_too_small_a_validation_set_blends_nothing() -> None:
    engine = _decisions()
    keep = np.arange(30)  # 30 validation samples: below min_val_choice = 50
    engine.val_y = engine.val_y[keep]
    engine.answer = Answer({"pixels": 1.0}, engine.answer.val[keep], engine._val_score(engine.answer.val[keep]),
                           test=np.zeros((5, 2)), label="pixels")
    _challenger(engine, "network-1", 5.0, seed=6)  # far better on these 30 samples: it replaces the answer alone
    engine.predictors["network-1"].val = engine.predictors["network-1"].val[keep]
    engine._consider(["network-1"], prefer_new=False)
    assert engine.pending.recipe == {"network-1": 1.0}  # no blend on 30 samples
    engine.pending = None
    _challenger(engine, "probe", 0.0, seed=7)  # no signal, but the probe is preferred over pixels by prior
    engine.predictors["probe"].val = engine.predictors["probe"].val[keep]
    engine._consider(["probe"], prefer_new=True)
    assert engine.pending.recipe == {"probe": 1.0}


@pytest.mark.parametrize("floor, switches", [(30, False), (0, True)])
def test_no_switch_on_fewer_rows_than_min_val_switch(floor: int, switches: bool,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    engine = _decisions()
    engine.settings = RuntimeSettings(min_val_switch=floor)
    _challenger(engine, "network-1", 5.0, seed=8)  # far better, but honest on 12 rows only (held out from it)
    engine.predictors["network-1"].rows = np.arange(12)
    caplog.set_level(logging.INFO, logger="runtime.engine")
    engine._consider(["network-1"], prefer_new=False)
    assert (engine.pending is not None) == switches
    assert ("fewer than 30 rows: no switch" in caplog.text) == (not switches)


def test_switch_confidence_zero_compares_scores() -> None:
    engine = _decisions(switch_confidence=0.0)
    _challenger(engine, "network-1", 0.9, seed=5)
    engine._consider(["network-1"], prefer_new=False)
    better = max(engine.predictors["network-1"].val_score, engine.pending.score if engine.pending else -1)
    assert (engine.pending is not None) == (better > engine.answer.score)


def test_pixel_features_of_images_and_clips() -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 40, 30, 1), dtype=np.uint8)
    clips = np.random.default_rng(1).integers(0, 256, (2, 5, 20, 20, 3), dtype=np.uint8)
    assert pixel_features(images, 8).shape == (3, 64) and pixel_features(clips, 8).shape == (2, 192)
    flat = np.full((1, 1, 32, 32, 3), 255, np.uint8)
    assert np.allclose(pixel_features(flat, 16), 1.0)


@pytest.mark.parametrize("field, value", [("growth", 0), ("val_fraction", 1.0), ("safety", -1), ("patience", 0)])
def test_bad_settings_name_the_setting(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"The '{field}' setting must be"):
        RuntimeSettings(**{field: value})


def test_settings_file_with_a_bad_value_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.settings import load_settings

    (tmp_path / "s.json").write_text('{"growth": -1}')
    monkeypatch.setenv("AUTODL_SETTINGS", str(tmp_path / "s.json"))
    with pytest.raises(ValueError, match=r"s\.json: The 'growth' setting must be a positive number"):
        load_settings(str(tmp_path))


@pytest.mark.parametrize("field, value", [("probe_resolutions", (128, 64)), ("probe_resolutions", (8,)),
                                          ("cv_folds", 1), ("probe_share", 1.0), ("probe_first_seconds", -1),
                                          ("probe_C", 0), ("pixel_C", -1.0), ("probe_C", True),
                                          ("pixel_C", float("inf")), ("forward_activations", -1),
                                          ("forward_activations", 1.5), ("forward_activations", True),
                                          ("store_native", 1), ("store_native", "yes"),
                                          ("probe_features", "pooled"), ("pixel_max_iter", 0),
                                          ("pixel_max_iter", 10.0), ("pixel_max_iter", True)])
def test_bad_probe_and_cv_settings_name_the_setting(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"The '{field}' setting must be"):
        RuntimeSettings(**{field: value})


def test_the_linear_models_are_regularised_as_the_settings_say(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_C=0.003, pixel_C=2.0, pixel_max_iter=3, cv_folds=0)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    engine.test(test.get_dataset(), remaining_time_budget=59)
    engine.train(train.get_dataset(), remaining_time_budget=59)
    assert (engine.pixel_model.C, engine.probe.C) == (2.0, 0.003)
    assert engine.probe.model_.C == 0.003  # what the solver was given
    assert engine.pixel_model.model_.max_iter == 3 and 1 <= engine.pixel_model.iterations() <= 3
    assert engine.probe.model_.max_iter == PROBE_MAX_ITER  # the cap is the pixel model's alone


@pytest.mark.parametrize("pooling, width", [("stages", 208), ("head", 1024)])
def test_the_probe_reads_the_features_the_settings_say(data: tuple[AutoDLDataset, AutoDLDataset], pooling: str,
                                                       width: int) -> None:
    """MobileNetV3-small: its pooled stage outputs (24 + 40 + 48 + 96) by default, its penultimate features with
    "head" (the flow before)."""
    train, test = data
    engine = _engine(60, [CONFIG], probe_features=pooling, cv_folds=0)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    engine.test(test.get_dataset(), remaining_time_budget=59)
    engine.train(train.get_dataset(), remaining_time_budget=59)
    assert engine.probe is not None and engine.probe.scaler_.n_features_in_ == width
    assert {f.shape[1] for f in engine.sample_features_by_rung.values()} == {width}


def test_small_data_is_cross_validated(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    """The first sample holds all 60 samples: the linear models are scored out of fold on all of them and
    fitted on all of them; the network trains without the held-out part and is scored on it alone."""
    train, test = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32,), probe_flip=False)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert len(engine.cv_folds) == 5 and len(engine.val_y) == 60 and np.array_equal(engine.net_rows, engine.val_idx)
    held = np.sort(np.concatenate([h for _, h in engine.cv_folds]))
    assert np.array_equal(held, np.arange(60))  # every sample held out once
    assert engine._pixels_due is not None  # the first answer does not wait for the folds
    engine.test(test.get_dataset(), remaining_time_budget=59)
    engine.train(train.get_dataset(), remaining_time_budget=59)
    pixels = engine.predictors["pixels"]
    features = pixel_features(engine.sample_x, engine.settings.pixel_size)
    oof = engine._out_of_fold(features, engine.sample_y, "pixels")
    assert np.allclose(pixels.val, oof)  # out of fold now
    assert not np.allclose(pixels.val, engine.pixel_model.predict(features))  # not the model fitted on all
    assert pixels.rows is None and np.array_equal(engine.answer.val, pixels.val)  # the first answer rescored
    probe, (rung,) = engine.probes["probe"]
    assert np.allclose(engine.predictors["probe"].val,
                       engine._out_of_fold(engine.val_features[rung], engine.sample_y, "probe"),
                       atol=1e-6)
    engine.test(test.get_dataset(), remaining_time_budget=58)
    engine.train(train.get_dataset(), remaining_time_budget=58)
    assert engine.phase is Phase.FINE_TUNE and len(engine.train_data.x) == 60 - len(engine.val_idx)
    network = engine.predictors["network-1"]
    outside = np.setdiff1d(np.arange(60), engine.net_rows)
    assert np.array_equal(network.rows, engine.net_rows) and np.all(network.val[outside] == 0)
    assert network.val_score == engine._val_score(network.val, engine.net_rows)


def test_without_cv_folds_every_predictor_is_held_out(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, _ = data
    engine = _engine(60, [CONFIG], cv_folds=0)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.cv_folds == [] and engine.net_rows is None and len(engine.val_y) == len(engine.val_idx) < 60


def test_cross_validation_with_classes_smaller_than_the_folds(make_array_dataset) -> None:
    folder, _ = make_array_dataset("few", n_train=20, n_test=4, shape=(16, 16, 3), classes=10)  # 2 per class
    train = AutoDLDataset(str(folder / "few.data/train"))
    engine = AnytimeEngine(num_classes=10, train_size=20, probe_extractor=FeatureExtractor("mobilenet_v3_small", None,
                                                                                          resolution=32),
                           candidates=[], storage_resolution=32, settings=RuntimeSettings(probe_resolutions=(32,)))
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert len(engine.cv_folds) == 5 and engine.predictors["pixels"].val.shape == (20, 10)
    # random images: the pooled out-of-fold scores are shifted to the sample's class frequencies, without
    # which each sample's own class ranks low (tests/test_runtime/test_probe.py)
    features = pixel_features(engine.sample_x, engine.settings.pixel_size)
    shifted = engine._out_of_fold(features, engine.sample_y, "pixels")
    engine.settings = replace(engine.settings, oof_prior_shift=False)
    raw = engine._out_of_fold(features, engine.sample_y, "pixels")
    assert nauc(engine.sample_y, raw) < nauc(engine.sample_y, shifted) - 0.2


def test_answers_are_compared_on_the_rows_where_both_are_honest(caplog: pytest.LogCaptureFixture) -> None:
    engine = _decisions()
    labels = engine.val_y.argmax(1)
    rows = np.arange(0, 400, 4)
    # a network perfect on its held-out rows; its other rows are zeros and must not count
    val = np.zeros((400, 2), np.float32)
    val[rows] = np.eye(2)[labels[rows]]
    engine.predictors["network-1"] = _Predictor("network-1", val, lambda: np.zeros((5, 2)),
                                                engine._val_score(val, rows), rows=rows)
    assert engine.predictors["network-1"].val_score == 1.0 and engine._val_score(val) < 0.6
    with caplog.at_level("INFO", logger="runtime.engine"):
        engine._consider(["network-1"], prefer_new=False)
    assert engine.pending is not None and "network-1" in engine.pending.recipe
    assert np.array_equal(engine.pending.rows, rows)
    # the log says what was compared: both answers on the network's 100 rows, not their scores on other rows
    current = engine._val_score(engine.answer.val, rows)
    assert f"on the 100 rows where both are honest 1.000 against {current:.3f}" in caplog.text


def test_the_probe_climbs_rungs_while_time_allows(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32, 48), probe_first_seconds=0.0, probe_share=0.9,
                     probe_climb="best")
    engine.train(train.get_dataset(), remaining_time_budget=600)
    engine.test(test.get_dataset(), remaining_time_budget=600)
    engine.train(train.get_dataset(), remaining_time_budget=600)  # nothing fits 0 s: the cheapest rung first
    assert engine.rung == (32, False, 0) and engine.phase is Phase.PROBE  # a better rung is affordable
    engine.test(test.get_dataset(), remaining_time_budget=600)
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert engine.rung == (48, True, 0) and "probe@48+flip" in engine.predictors and engine.phase is Phase.PREPARE
    assert set(engine.val_features) == {(32, False, 0), (48, True, 0)}
    engine.pending = Answer({"probe": 0.5, "probe@48+flip": 0.5}, engine.predictors["probe"].val, 0.0, label="both")
    engine.test(test.get_dataset(), remaining_time_budget=600)
    assert set(engine._features_cache) == {(32, False, 0), (48, True, 0)}  # each rung's test features, computed once


def test_the_probe_can_climb_one_side_at_a_time(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32, 40, 48), probe_first_seconds=0.0, probe_share=0.9,
                     probe_climb="step")
    climbed = []
    for _ in range(5):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
        if engine.rung is not None and engine.rung not in climbed:
            climbed.append(engine.rung)
    assert climbed == [(32, False, 0), (40, False, 0), (48, False, 0), (48, True, 0)] and engine.phase is Phase.PREPARE
    with pytest.raises(ValueError, match="The 'probe_climb' setting must be 'best' or 'step'"):
        RuntimeSettings(probe_climb="up")


def test_a_flipped_rung_reuses_the_plain_features_of_its_side(data: tuple[AutoDLDataset, AutoDLDataset],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32, 48), probe_first_seconds=0.0, probe_share=0.9,
                     probe_climb="step", cv_folds=0)
    extractor = engine.probe_extractor
    calls: list[dict[str, object]] = []
    extract = extractor.extract
    now = [1000.0]  # the engine's clock: 10 ms per sample and pass, so that measured rates do not depend on load

    class FakeTime:
        @staticmethod
        def time() -> float:
            now[0] += 1e-6
            return now[0]

    def spy(x: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append({"n": len(x), **kwargs})
        now[0] += 0.01 * len(x)
        return extract(x, **kwargs)

    monkeypatch.setattr(engine_module, "time", FakeTime)
    monkeypatch.setattr(extractor, "extract", spy)
    for _ in range(4):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
        if engine.rung == (48, False, 0):
            break
    assert engine.rung == (48, False, 0)
    engine._test_features((48, False, 0))
    # every part (sample, validation, test) has its plain features: the flipped rung costs one pass, not two
    assert engine._rung_cost((48, True, 0)) == pytest.approx(engine._rung_cost((48, False, 0)))
    calls.clear()
    engine.train(train.get_dataset(), remaining_time_budget=600)
    engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.rung == (48, True, 0)
    engine._test_features((48, True, 0))
    assert calls and all(c.get("mirrored") and not c.get("flip") for c in calls if c.get("resolution") == 48)
    scale = np.abs(engine.val_features[(48, False, 0)]).max()
    for got, x in ((engine.val_features[(48, True, 0)], engine.val_x), (engine._features_cache[(48, True, 0)], engine.test_x)):
        assert np.abs(got - extract(x, resolution=48, flip=True, pooling="stages")).max() <= 1e-4 * scale  # the same average
    # the rung's rate counts both passes (one ran): half the plain rate, as the refit will pay both for new samples
    assert engine.probe_rates[(48, True, 0)] == pytest.approx(engine.probe_rates[(48, False, 0)] / 2, rel=1e-3)


def test_a_rung_is_timed_by_its_fastest_pass(data: tuple[AutoDLDataset, AutoDLDataset],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    train, _ = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32,))
    engine.train(train.get_dataset(), remaining_time_budget=600)
    now, durations, passes = [1000.0], iter([5.0, 0.4, 0.08]), []  # warm-up, then a slow and a fast timed pass

    class FakeTime:
        @staticmethod
        def time() -> float:
            return now[0]

    def timed(x: np.ndarray, **kwargs: object) -> np.ndarray:
        passes.append(len(x))
        now[0] += next(durations)
        return np.zeros((len(x), 4), np.float32)

    monkeypatch.setattr(engine_module, "time", FakeTime)
    monkeypatch.setattr(engine.probe_extractor, "extract", timed)
    engine._rung_cost((32, False, 0))
    assert passes == [8] * (1 + engine_module.RUNG_TIMINGS) and engine_module.RUNG_TIMINGS == 2
    assert engine.probe_rates[(32, False, 0)] == pytest.approx(8 / 0.08)  # the fastest pass, not the first


def test_no_time_for_a_better_rung_goes_on(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG], probe_resolutions=(32, 48), probe_first_seconds=0.0, probe_share=0.0)
    engine.train(train.get_dataset(), remaining_time_budget=600)
    engine.test(test.get_dataset(), remaining_time_budget=600)
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert engine.rung == (32, False, 0) and engine.phase is Phase.PREPARE and list(engine.probes) == ["probe"]


def test_a_stall_fits_a_better_probe_before_the_next_configuration(
        data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG, CONFIG], probe_resolutions=(32, 48), probe_flip=False, probe_first_seconds=0.0,
                     probe_share=0.0, probe_late_share=0.9, cv_folds=0)
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.FINE_TUNE and engine.rung == (32, False, 0)
    engine._next_configuration(stalled=True)
    assert engine.phase is Phase.PROBE and engine.late_rung and len(engine.candidates) == 1
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert engine.rung == (48, False, 0) and "probe@48" in engine.predictors and not engine.late_rung
    assert engine.phase is Phase.PREPARE  # then the next configuration
    assert len(engine.val_features[(48, False, 0)]) == len(engine.val_y)
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.FINE_TUNE and engine.faults == []


class _Failing(FeatureExtractor):
    """A companion network that fails once it is read in earnest (its timing on a few samples works)."""

    def extract(self, x: np.ndarray, **kwargs: object) -> np.ndarray:  # type: ignore[override]
        if len(x) > 8:
            raise RuntimeError("companion out of memory")
        return super().extract(x, **kwargs)


def _with_companion(n: int, companion: FeatureExtractor, **settings: object) -> AnytimeEngine:
    return _engine(n, [CONFIG], companions=((companion.info.backbone, lambda: companion),), **settings)


def test_a_companion_probe_follows_the_climb(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    companion = FeatureExtractor("resnet18", None, resolution=32, seed=1)
    engine = _with_companion(60, companion, probe_resolutions=(32,), probe_first_seconds=0.0, probe_share=0.9,
                             cv_folds=0)
    for _ in range(3):  # pixels; the probe at 32 px; its flipped rung
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.rung == (32, True, 0) and engine.phase is Phase.PROBE  # a companion is due
    assert engine.extractors[1] is None  # not built before it is timed
    engine.train(train.get_dataset(), remaining_time_budget=600)
    name = "probe@32+flip+resnet18"
    probe, rungs = engine.probes[name]
    assert rungs == ((32, True, 0), (32, True, 1)) and engine.rung == (32, True, 0)  # the probe's own rung stays
    assert engine.phase is Phase.PREPARE and engine._companion_rung() is None  # each companion once
    own, other = 24 + 40 + 48 + 96, 128 + 256 + 512  # pooled stages of MobileNetV3-small and of ResNet18
    joined = np.concatenate([engine.val_features[(32, True, 0)], engine.val_features[(32, True, 1)]], axis=1)
    assert joined.shape == (len(engine.val_y), own + other)
    assert np.allclose(engine.predictors[name].val, probe.predict(joined))
    # test inputs: the same features, each network's flipped average, side by side
    test_joined = np.concatenate([engine.probe_extractor.extract(engine.test_x, resolution=32, flip=True,
                                                                 pooling="stages"),
                                  companion.extract(engine.test_x, resolution=32, flip=True, pooling="stages")], axis=1)
    assert np.allclose(engine.predictors[name].test_predictions(), probe.predict(test_joined), atol=1e-5)
    # the validation set grows for the companion's rung too
    x, y = engine._decode_training_set(train.get_dataset(), available=600)
    engine._grow_validation(x, y, available=600)
    assert all(len(f) == len(engine.val_y) for f in engine.val_features.values())
    assert len(engine.predictors[name].val) == len(engine.val_y)


def test_companions_off_is_the_flow_before_them(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _with_companion(60, FeatureExtractor("resnet18", None, resolution=32, seed=1), probe_resolutions=(32,),
                             probe_first_seconds=0.0, probe_share=0.9, probe_companions="off")
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.PREPARE and list(engine.probes) == ["probe", "probe@32+flip"]
    assert not any(rung[2] for rung in engine.val_features)


def test_a_companion_that_fails_leaves_the_probe_standing(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _with_companion(60, _Failing("resnet18", None, resolution=32, seed=1), probe_resolutions=(32,),
                             probe_flip=False, probe_first_seconds=0.0, probe_share=0.9)
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert [f.error for f in engine.faults] == ["RuntimeError: companion out of memory"]
    assert engine.failed_nets == {1} and engine._companion_rung() is None and engine.phase is Phase.PREPARE
    assert list(engine.probes) == ["probe"] and engine.answer.recipe in ({"probe": 1.0}, {"pixels": 1.0})
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.FINE_TUNE  # fine-tuning goes on


def test_a_stall_reads_a_companion_when_the_climb_is_over(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _with_companion(60, FeatureExtractor("resnet18", None, resolution=32, seed=1), probe_resolutions=(32,),
                             probe_flip=False, probe_first_seconds=0.0, probe_share=0.0, probe_late_share=0.9,
                             cv_folds=0)
    engine.candidates.append(CONFIG)
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.FINE_TUNE and list(engine.probes) == ["probe"]  # no share before fine-tuning
    engine._next_configuration(stalled=True)
    assert engine.phase is Phase.PROBE and engine.late_rung
    engine.train(train.get_dataset(), remaining_time_budget=600)
    assert "probe+resnet18" in engine.predictors and not engine.late_rung and engine.phase is Phase.PREPARE
    assert engine._companion_rung() is None and engine.faults == []


def test_a_companion_that_cannot_be_built_is_dropped_in_any_phase(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data

    def broken() -> FeatureExtractor:
        return FeatureExtractor("resnet18", "/nowhere/resnet18-imagenet.pt", resolution=32)

    engine = _engine(60, [CONFIG, CONFIG], companions=(("resnet18", broken),), probe_resolutions=(32,),
                     probe_flip=False, probe_first_seconds=0.0, probe_share=0.0, probe_late_share=0.9)
    for _ in range(3):
        engine.train(train.get_dataset(), remaining_time_budget=600)
        engine.test(test.get_dataset(), remaining_time_budget=600)
    assert engine.phase is Phase.FINE_TUNE and engine.failed_nets == {1}  # timed, failed, the run goes on
    assert [f.config for f in engine.faults] == ["resnet18"] and "resnet18-imagenet.pt" in engine.faults[0].error
    engine._next_configuration(stalled=True)  # asked again after a stall: not rebuilt, no new fault
    assert engine.phase is Phase.PREPARE and len(engine.faults) == 1


@pytest.mark.parametrize("mode, due_below_top", [("top", False), ("any", True), ("off", False)])
def test_companions_wait_for_the_top_side_by_default(data: tuple[AutoDLDataset, AutoDLDataset], mode: str,
                                                     due_below_top: bool) -> None:
    train, test = data
    engine = _with_companion(60, FeatureExtractor("resnet18", None, resolution=32, seed=1),
                             probe_resolutions=(32, 48), probe_first_seconds=0.0, probe_companions=mode)
    engine.train(train.get_dataset(), remaining_time_budget=600)
    engine.test(test.get_dataset(), remaining_time_budget=600)
    engine.train(train.get_dataset(), remaining_time_budget=600)  # the probe at 32 px; no share for 48 px
    assert engine.rung == (32, False, 0) and bool(engine._companions_due()) is due_below_top
    assert engine.phase is (Phase.PROBE if due_below_top else Phase.PREPARE)
    engine.rung = (48, False, 0)  # as if the climb had reached the top side
    assert bool(engine._companions_due()) is (mode != "off")
    with pytest.raises(ValueError, match="The 'probe_companions' setting must be 'off', 'top' or 'any'"):
        RuntimeSettings(probe_companions="on")
