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
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32)
    result = evaluate_config(config, str(digits), budget=20.0)
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
