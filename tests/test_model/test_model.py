"""The submission's Model: through the local runner, with a damaged bundle, forced configs, TF first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from metadata.convert import convert_image_folders
from portfolio.meta_train import make_video_dataset
from scoring import files
from scoring.run import EXIT_OK, run_local
from tests.test_model.bundle_factory import make_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pool(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("known")
    out = {}
    for name, classes in (("mnist", ["0", "1", "2"]), ("cifar10", ["cat", "ship", "truck"])):
        out[name] = root / name
        convert_image_folders(str(raw_dir / name), str(out[name]), classes=classes, max_per_class=30, progress=False)
    out["video"] = root / "video"
    make_video_dataset(str(out["cifar10"]), str(out["video"]), name="video", frames=4, size=24, clips_per_class=12)
    return out


@pytest.fixture(scope="module")
def bundle(pool: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("b") / "bundle", {k: str(pool[k]) for k in ("mnist", "cifar10")})


def _run(dataset: Path, bundle: Path, out: Path, monkeypatch: pytest.MonkeyPatch, budget: float = 25, **env: str):
    monkeypatch.setenv("AUTODL_BUNDLE", str(bundle))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return run_local(str(dataset), str(REPO), str(out), time_budget=budget, t0=budget / 20, poll=0.2, verbose=False)


def _check(result, budget: float) -> None:
    o = result.outcome
    assert result.exit_code == EXIT_OK, Path(result.log).read_text()[-3000:]
    assert len(o.scores) >= 2 and o.first_prediction_time < budget / 3
    assert o.timestamps[-1] <= budget and not o.time_limit_exceeded
    prediction = files.read_prediction(str(Path(result.scores).parent.parent / "predictions" /
                                           f"{result.task}.predict_0"))
    assert np.isfinite(prediction).all()


@pytest.mark.slow  # the default run has both samples through the extracted zip (test_submission_zip)
@pytest.mark.parametrize("name", ["miniciao", "Monkeys"])
def test_official_samples_through_the_runner(name: str, samples_dir: Path, bundle: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(samples_dir / name, bundle, tmp_path / name, monkeypatch)
    _check(result, 25)
    assert "[select] most similar known dataset" in Path(result.log).read_text()


@pytest.mark.slow  # 30 s; clips through the classifier in process: tests/test_runtime/test_classifier.py
def test_grayscale_and_video_through_the_runner(pool: dict[str, Path], bundle: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gray = _run(pool["mnist"], bundle, tmp_path / "gray", monkeypatch, budget=14)
    _check(gray, 14)
    assert "most similar known dataset: mnist" in Path(gray.log).read_text()
    video = _run(pool["video"], bundle, tmp_path / "video", monkeypatch, budget=14)
    _check(video, 14)


def test_forced_configuration_turns_selection_off(samples_dir: Path, bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(samples_dir / "miniciao", bundle, tmp_path / "forced", monkeypatch, budget=8,
                  AUTODL_CONFIG="cfg-mnist")
    log = Path(result.log).read_text()
    assert result.exit_code == EXIT_OK and "[select]" not in log and "configuration cfg-mnist" in log


def test_damaged_bundle_is_a_clear_error(samples_dir: Path, bundle: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "store.npz").unlink()
    result = _run(samples_dir / "miniciao", broken, tmp_path / "b1", monkeypatch, budget=10)
    assert result.exit_code != EXIT_OK and result.outcome.scores == []
    assert "store.npz: missing part of the bundled portfolio" in Path(result.log).read_text()
    # Asking for the default configuration explicitly still runs (with the built-in default): the Model as the
    # platform builds it, in this process (the runner's path is the one above)
    import importlib.util

    from metadata.reader import AutoDLDataset

    monkeypatch.setenv("AUTODL_BUNDLE", str(broken))
    monkeypatch.setenv("AUTODL_CONFIG", "default")
    monkeypatch.delenv("AUTODL_SETTINGS", raising=False)
    spec = importlib.util.spec_from_file_location("_model_default", REPO / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    test = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/test"))
    with caplog.at_level("WARNING", logger="runtime.classifier"):
        model = module.Model(train.get_metadata())
    assert "using the built-in default as asked" in caplog.text
    model.train(train.get_dataset(), remaining_time_budget=60)
    prediction = model.test(test.get_dataset(), remaining_time_budget=59)
    assert prediction.shape == (test.get_metadata().size(), 10) and np.isfinite(prediction).all()


def test_tensorflow_first_and_official_style_datasets(samples_dir: Path, bundle: Path) -> None:
    script = textwrap.dedent(f"""
        import tensorflow as tf  # the ingestion program imports TensorFlow before model.py
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from metadata.reader import AutoDLDataset
        train = AutoDLDataset({str(samples_dir / "Monkeys/Monkeys.data/train")!r})
        test = AutoDLDataset({str(samples_dir / "Monkeys/Monkeys.data/test")!r})
        from model import Model
        m = Model(train.get_metadata())
        shapes = []
        for _ in range(3):
            m.train(train.get_dataset(), remaining_time_budget=60)
            y = m.test(test.get_dataset(), remaining_time_budget=60)
            shapes.append((y.shape, str(y.dtype), bool((y >= 0).all())))
        print(shapes)
    """)
    env = {**os.environ, "AUTODL_BUNDLE": str(bundle), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=str(REPO), env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str([((4, 10), "float32", True)] * 3)
