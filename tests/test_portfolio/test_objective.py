"""The default objective: an anytime run scored by ALC on held-out train data."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.backbones import WeightsError
from learner.config import TrainConfig
from metadata.convert import convert_image_folders
from portfolio.matrix import Job, run_job
from portfolio.objective import evaluate_config
from scoring.metrics import alc


@pytest.fixture(scope="module")
def digits(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "digits"
    convert_image_folders(str(raw_dir / "mnist"), str(out), classes=["0", "1"], max_per_class=100, progress=False)
    return out


def test_anytime_alc_on_real_digits(digits: Path) -> None:
    """The run-time engine: probe first (an answer within seconds), then fine-tuning rounds, scored by ALC."""
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32)
    result = evaluate_config(config, str(digits), budget=20.0)
    assert result.first_prediction < 5.0 and result.steps > 0  # what the submission runs
    assert len(result.timestamps) >= 3 and result.timestamps == sorted(result.timestamps)
    assert 0 < result.first_prediction < 20.0 and result.timestamps[-1] <= 20.0
    assert result.final_nauc > 0.8
    # T = budget, t0 = budget / 20: the platform's curve shape
    assert result.alc == pytest.approx(alc(result.timestamps, result.scores, time_budget=20.0, t0=1.0))
    assert 0 < result.alc < 1


def test_a_crashing_cell_is_recorded_as_a_crash(digits: Path, tmp_path: Path) -> None:
    config = {"model": "resnet18:imagenet", "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 16,
              "dropout": 0.1, "resolution": 32}
    record = run_job(Job(str(digits), "digits", "c", config, 0, 2.0, str(tmp_path), "portfolio.objective:alc_objective"))
    assert record["status"] == "crash" and "WeightsError" in record["error"] and "alc" not in record
    with pytest.raises(WeightsError):
        evaluate_config(TrainConfig(backbone="resnet18", resolution=32), str(digits), 2.0, weights_dir=str(tmp_path))


def test_held_out_split_is_stratified_and_hides_the_labels(digits: Path) -> None:
    from metadata.arrays import to_arrays
    from portfolio.objective import held_out_split

    data = held_out_split(str(digits), 0.25, seed=1)
    train, test = to_arrays(data.train), to_arrays(data.test)
    assert len(train) == data.train_size == 150 and len(test) == len(data.test_labels) == 50
    assert not test.y.any() and data.test_labels.sum(0).tolist() == [25, 25]  # hidden, stratified
    assert train.y.sum(0).tolist() == [75, 75]
    small = held_out_split(str(digits), 0.25, seed=1, max_samples=40)
    assert small.train_size + len(small.test_labels) == 40


def test_an_engine_fault_is_a_crash(digits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from learner.trainer import Trainer
    from portfolio.objective import ConfigurationFailed

    def oom(self, seconds, **kwargs):
        raise MemoryError("injected")

    monkeypatch.setattr(Trainer, "train_for", oom)
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32)
    with pytest.raises(ConfigurationFailed, match="fine-tune: MemoryError: injected"):
        evaluate_config(config, str(digits), budget=25.0)


def test_run_time_settings_split_as_the_model_applies_them() -> None:
    from portfolio.objective import split_settings
    from runtime.settings import RuntimeSettings

    config = {"model": "resnet18:random", "name": "x", "rt:patience": "2", "rt:cv_folds": "3",
              "settings": {"blend": False}}
    settings, member = split_settings(config)
    assert settings == RuntimeSettings(cv_folds=3)  # the first answers' knob is global
    assert member == {"patience": 2, "blend": False}  # applied once the configuration is chosen
    with pytest.raises(ValueError, match="configuration 'x': pixel_first act"):
        split_settings({**config, "settings": {"pixel_first": False}})


def test_a_members_settings_reach_the_engine(digits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import engine as engine_module

    seen = {}
    original = engine_module.AnytimeEngine.__init__

    def spy(self, **kwargs):
        seen.update(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(engine_module.AnytimeEngine, "__init__", spy)
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32)
    evaluate_config(config, str(digits), budget=3.0, member={"patience": 2})
    assert seen["member_settings"] == {config: {"patience": 2}}


def test_a_prefix_of_a_longer_run_scores_the_longer_runs_curve(digits: Path) -> None:
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32)
    result = evaluate_config(config, str(digits), budget=4.0, horizon=40.0)
    assert result.timestamps and result.timestamps[-1] <= 4.0
    # the ALC of the horizon's curve, the last answer held until the horizon
    assert result.alc == pytest.approx(alc(result.timestamps, result.scores, time_budget=40.0, t0=2.0))
    with pytest.raises(ValueError, match="horizon 2 s is shorter than the budget 4 s"):
        evaluate_config(config, str(digits), budget=4.0, horizon=2.0)
