"""The local runner end to end, with small fixture models on a tiny dataset written by `metadata`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scoring import files
from scoring.metrics import alc
from scoring.run import EXIT_MODEL_FAILED, EXIT_OK, EXIT_TIMEOUT, main as run_main, run_local
from tests.test_scoring.fixture_models import write_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset(make_array_dataset, monkeypatch: pytest.MonkeyPatch) -> Path:
    out, _ = make_array_dataset("runtiny", n_train=8, n_test=9, classes=3)
    monkeypatch.setenv("FIXTURE_SOLUTION", str(out / "runtiny.solution"))
    return out


def _run(dataset: Path, tmp_path: Path, kind: str, budget: float = 60, **kwargs):
    code = write_model(tmp_path / kind, kind)
    return run_local(str(dataset), str(code), str(tmp_path / f"run-{kind}"), time_budget=budget, t0=5,
                     poll=0.2, grace=2, verbose=False, **kwargs)


def test_improving_model_and_files(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "improving")
    o = result.outcome
    assert result.exit_code == EXIT_OK and len(o.scores) == 4
    assert o.scores[-1] == 1.0 and o.scores[0] < o.scores[-1]
    assert o.timestamps == sorted(o.timestamps) and 0 < o.first_prediction_time < 30
    scores = files.read_scores(result.scores)
    assert scores["nauc_scores"] == pytest.approx(o.scores)
    assert scores["score"] == pytest.approx(alc(scores["timestamps"], scores["nauc_scores"], time_budget=60, t0=5))
    assert os.path.getsize(result.png) > 10_000
    run = Path(result.scores).parent.parent
    prediction = (run / "predictions" / "runtiny.predict_3").read_text()
    assert prediction == files.format_prediction(np.loadtxt(dataset / "runtiny.solution", ndmin=2) * 1.0)
    end = files.read_end(str(run / "predictions" / "end.txt"))
    assert end["ingestion_success"] == 1
    html = (run / "scores" / "detailed_results.html").read_text()
    assert "base64," in html and 'http-equiv="refresh"' not in html


def test_crash_in_third_train_call(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "crash")
    assert result.exit_code == EXIT_MODEL_FAILED
    assert result.outcome.scores == [1.0, 1.0] and result.outcome.alc > 0
    assert result.outcome.ingestion_success is False
    log = Path(result.log).read_text()
    assert "Traceback" in log and "RuntimeError: boom in train call 3" in log
    assert files.read_scores(result.scores)["nauc_scores"] == [1.0, 1.0]


def test_overrun_is_killed_and_earlier_predictions_count(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "overrun", budget=6)
    assert result.exit_code == EXIT_TIMEOUT and result.outcome.time_limit_exceeded
    assert result.outcome.scores == [1.0] and result.outcome.alc > 0.5
    run = Path(result.scores).parent.parent
    assert not (run / "predictions" / "end.txt").exists()
    pid = files.read_start(str(run / "predictions" / "start.txt")).ingestion_pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow  # 16 s; the kill at the budget itself stays in the default run (test_overrun_...)
def test_sigterm_ignored_then_killed(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "ignores_sigterm", budget=5)
    assert result.exit_code == EXIT_TIMEOUT and result.outcome.scores == [1.0]
    run = Path(result.scores).parent.parent
    pid = files.read_start(str(run / "predictions" / "start.txt")).ingestion_pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_none_from_test_ends_the_loop(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "returns_none")
    assert result.exit_code == EXIT_OK and len(result.outcome.scores) == 1


def test_wrong_prediction_shape(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "wrong_shape")
    assert result.exit_code == EXIT_MODEL_FAILED and result.outcome.scores == []
    assert "BadPredictionShapeError: prediction shape (3, 9) should be (9, 3)" in Path(result.log).read_text()


def test_done_training_still_gets_its_last_test(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "done_training")
    assert result.exit_code == EXIT_OK and len(result.outcome.scores) == 2


def test_constructor_failure(dataset: Path, tmp_path: Path) -> None:
    result = _run(dataset, tmp_path, "init_fails")
    assert result.exit_code == EXIT_MODEL_FAILED and result.outcome.scores == []
    assert "ValueError: cannot build" in Path(result.log).read_text()


def test_refuses_stale_output_dir_then_scores_a_constant_model(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "run-constant" / "predictions").mkdir(parents=True)  # what an earlier run leaves
    (tmp_path / "run-constant" / "predictions" / "runtiny.predict_0").write_text("1 0 0\n")
    code = write_model(tmp_path / "constant", "constant")
    args = ["--dataset-dir", str(dataset), "--code-dir", str(code), "--output-dir", str(tmp_path / "run-constant"),
            "--time-budget", "30"]
    assert run_main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert run_main(args + ["--overwrite", "--t0", "5"]) == EXIT_OK  # the constant model: NAUC 0 throughout
    assert "ALC: 0.0000" in capsys.readouterr().out
    scores = files.read_scores(str(tmp_path / "run-constant" / "scores" / "scores.txt"))
    assert scores["nauc_scores"] == [0.0, 0.0, 0.0] and scores["score"] == 0.0 and len(scores["accuracy"]) == 3


def test_ingestion_and_scoring_run_separately_with_official_arguments(dataset: Path, tmp_path: Path) -> None:
    code = write_model(tmp_path / "improving", "improving")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    predictions, scores = tmp_path / "pred", tmp_path / "score"
    subprocess.run([sys.executable, "-m", "scoring.ingest", f"--dataset_dir={dataset}",
                    f"--output_dir={predictions}", f"--ingestion_program_dir={tmp_path / 'ingestion_program'}",
                    f"--code_dir={code}", f"--score_dir={scores}", "--time_budget=60"], check=True, env=env,
                   capture_output=True)
    assert (scores / "runtiny.predict_3").exists()  # the kit copies its output into the score dir
    subprocess.run([sys.executable, "-m", "scoring.score", f"--solution_dir={dataset}",
                    f"--prediction_dir={predictions}", f"--score_dir={scores}", "--poll=0.1"], check=True, env=env,
                   capture_output=True)
    written = files.read_scores(str(scores / "scores.txt"))
    assert len(written["nauc_scores"]) == 4 and written["nauc_scores"][-1] == 1.0
    assert written["score"] == pytest.approx(alc(written["timestamps"], written["nauc_scores"], time_budget=60, t0=60))
    assert files.read_start(str(predictions / "start.txt")).time_budget == 60.0


def _run_folder(path: Path, timestamps: list[float], scores: list[float], start: float = 1000.0) -> str:
    """A runner output folder as the runner writes it (its files are checked against real runs above)."""
    (path / "predictions").mkdir(parents=True)
    (path / "scores").mkdir()
    files.write_start(str(path / "predictions" / "start.txt"), pid=1, task_name="runtiny", time_budget=60,
                      start_time=start)
    for i, t in enumerate(timestamps):
        files.append_timestamp(str(path / "predictions" / "start.txt"), i, start + t)
    files.write_scores(str(path / "scores" / "scores.txt"), score=alc(timestamps, scores, time_budget=60, t0=5),
                       duration=timestamps[-1], timestamps=timestamps, nauc_scores=scores, accuracy=[])
    return str(path)


def test_compare_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from scoring.compare import main as compare_main

    improving = ([2.0, 5.0, 11.0, 30.0], [0.2, 0.5, 0.8, 1.0])
    runs = [_run_folder(tmp_path / "improving", *improving), _run_folder(tmp_path / "constant", [1.0, 3.0], [0.0, 0.0])]
    assert compare_main(runs + ["--out", str(tmp_path / "cmp.png"), "--t0", "5"]) == 0
    printed = capsys.readouterr().out
    expected = alc(*improving, time_budget=60, t0=5)
    assert 0 < expected < 1 and f"{expected:.4f}  {runs[0]}" in printed and f"0.0000  {runs[1]}" in printed
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    assert compare_main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2


def test_a_test_set_that_cannot_be_scored_is_refused_before_anything_runs(
        make_array_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One class in every test row: no column is valid, so no prediction could ever be scored; the run
    names the solution file instead of reporting a model error, and leaves an earlier run in place."""
    out, _ = make_array_dataset("oneclass", n_train=8, n_test=4, classes=3)
    solution = out / "oneclass.solution"
    solution.write_text("0 1 0\n" * 4)
    code = write_model(tmp_path / "constant", "constant")
    earlier = tmp_path / "run" / "ingestion.log"
    earlier.parent.mkdir()
    earlier.write_text("an earlier run\n")
    args = ["--dataset-dir", str(out), "--code-dir", str(code), "--output-dir", str(tmp_path / "run"),
            "--overwrite"]
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert str(solution) in err and "no valid column" in err
    assert earlier.read_text() == "an earlier run\n" and not (tmp_path / "run" / "predictions").exists()
