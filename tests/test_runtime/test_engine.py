"""The anytime engine alone: its phases on one clock, and its fault boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fingerprint.extractor import FeatureExtractor
from learner.config import TrainConfig
from metadata.reader import AutoDLDataset
from runtime.engine import AnytimeEngine, Phase
from runtime.settings import RuntimeSettings

CONFIG = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=16, name="tiny")


def _engine(n: int, candidates: list[TrainConfig], **settings: float) -> AnytimeEngine:
    return AnytimeEngine(num_classes=3, train_size=n, probe_extractor=FeatureExtractor("mobilenet_v3_small", None,
                                                                                       resolution=32),
                         candidates=candidates, storage_resolution=32,
                         settings=RuntimeSettings(first_slice=1.0, **settings))


@pytest.fixture
def data(make_array_dataset) -> tuple[AutoDLDataset, AutoDLDataset]:
    folder, _ = make_array_dataset("engine", n_train=60, n_test=9, shape=(16, 16, 3), classes=3)
    return (AutoDLDataset(str(folder / "engine.data/train")), AutoDLDataset(str(folder / "engine.data/test")))


def test_phases_follow_the_schedule(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG])
    assert engine.phase is Phase.FIRST_ANSWER and not engine.done_training
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.phase is Phase.PREPARE and engine.probe is not None and engine.trainer is None
    first = engine.test(test.get_dataset(), remaining_time_budget=59)
    assert first.shape == (9, 3) and first.dtype == np.float32
    engine.train(train.get_dataset(), remaining_time_budget=58)
    assert engine.phase is Phase.FINE_TUNE and engine.trainer.total_steps > 0 and engine.rounds == 1
    assert engine.test_x.shape[1:] == (1, 32, 32, 3) == engine.val_x.shape[1:]  # one storage resolution
    engine.train(train.get_dataset(), remaining_time_budget=7.0)  # too little left beyond the reserve
    assert engine.done_training and engine.faults == []


def test_no_time_to_fine_tune_ends_after_the_probe(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG])
    engine.train(train.get_dataset(), remaining_time_budget=10)
    engine.test(test.get_dataset(), remaining_time_budget=9)
    engine.train(train.get_dataset(), remaining_time_budget=6)  # reserve 5 s + 1.5 x test: < 2 first slices
    assert engine.done_training and engine.trainer is None


def test_a_failing_prediction_falls_back_to_the_best_valid_answer(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [CONFIG, CONFIG])
    engine.train(train.get_dataset(), remaining_time_budget=60)
    probe_answer = engine.test(test.get_dataset(), remaining_time_budget=60)
    engine.train(train.get_dataset(), remaining_time_budget=60)
    engine.use_network, engine.net_val = True, 2.0  # pretend the network validated best
    network_answer = engine.test(test.get_dataset(), remaining_time_budget=60)

    def broken(x: np.ndarray) -> np.ndarray:
        raise MemoryError("out of memory")

    engine.trainer.predict = broken
    answer = engine.test(test.get_dataset(), remaining_time_budget=60)
    assert np.array_equal(answer, network_answer)  # its last answer validated better than the probe
    assert [f.error for f in engine.faults] == ["MemoryError: out of memory"] and engine.trainer is None
    assert engine.phase is Phase.PREPARE and len(engine.candidates) == 1  # the next configuration is tried
    engine.kept_answer = None
    assert np.array_equal(engine.test(test.get_dataset(), remaining_time_budget=60), probe_answer)


def test_without_candidates_the_probe_answers_alone(data: tuple[AutoDLDataset, AutoDLDataset]) -> None:
    train, test = data
    engine = _engine(60, [])
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.done_training and engine.test(test.get_dataset(), remaining_time_budget=60).shape == (9, 3)


def test_selection_failure_keeps_the_candidates(data: tuple[AutoDLDataset, AutoDLDataset],
                                                caplog: pytest.LogCaptureFixture) -> None:
    train, _ = data
    engine = _engine(60, [CONFIG])

    def select(x: np.ndarray, y: np.ndarray) -> list[TrainConfig]:
        raise ValueError("selector broken")

    engine.select = select
    engine.train(train.get_dataset(), remaining_time_budget=60)
    assert engine.config is CONFIG and "selection failed (selector broken)" in caplog.text


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
