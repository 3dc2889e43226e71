"""benchmarks/selection_reach.py and the helpers of benchmarks/alc.py on hand-made run folders."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

from scoring import files
from scoring.metrics import alc

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, times: list[float], naucs: list[float], log: list[tuple[float, str]]) -> Path:
    """A run folder as the local runner writes it: scores/scores.txt, predictions/start.txt, ingestion.log."""
    start = 1_800_000_000.0
    (tmp_path / "scores").mkdir()
    (tmp_path / "predictions").mkdir()
    files.write_scores(str(tmp_path / "scores" / "scores.txt"), score=0.5, duration=times[-1], timestamps=times,
                       nauc_scores=naucs, accuracy=naucs)
    files.write_start(str(tmp_path / "predictions" / "start.txt"), pid=1, task_name="t", time_budget=300,
                      start_time=start)
    lines = []
    for t, message in log:
        stamp = dt.datetime.fromtimestamp(start + t).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        lines.append(f"{stamp} INFO ingestion: {message}")
    (tmp_path / "ingestion.log").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_network_answers_are_held_at_the_last_answer_without_one(tmp_path):
    reach = _load("selection_reach")
    times, naucs = [1.0, 5.0, 30.0, 100.0], [0.5, 0.8, 0.9, 0.95]
    run = _run(tmp_path, times, naucs, [
        (0.9, "[test] answering with pixels (validation NAUC 0.6)"),
        (4.9, "[test] answering with probe 1.00 (validation NAUC 0.8)"),
        (20.0, "[train] round 1 (dtd): 10 steps in 5.0 s, validation NAUC 0.7 (answer 0.8)"),
        (29.9, "[test] answering with probe 0.75 + network-2 0.25 (validation NAUC 0.9)"),
        (99.9, "[test] answering with network-3 1.00 (validation NAUC 0.95)"),
    ])
    r = reach.reach(run, 15.0)
    assert r["alc"] == pytest.approx(alc(times, naucs, time_budget=300, t0=15))
    assert r["without"] == pytest.approx(alc(times, [0.5, 0.8, 0.8, 0.8], time_budget=300, t0=15))
    assert r["perfect"] == pytest.approx(alc(times, [0.5, 0.8, 1.0, 1.0], time_budget=300, t0=15))
    assert r["round"] == pytest.approx(20.0, abs=0.01)


def test_a_run_without_network_answers_gains_nothing_from_one(tmp_path):
    reach = _load("selection_reach")
    run = _run(tmp_path, [1.0, 10.0], [0.6, 0.7], [
        (0.9, "[test] answering with pixels (validation NAUC 0.6)"),
        (9.0, "[test] answering with probe@224 1.00 (validation NAUC 0.7)"),
    ])
    r = reach.reach(run, 15.0)
    assert r["without"] == pytest.approx(r["alc"])
    assert r["perfect"] == pytest.approx(r["alc"])  # no fine-tuning round: no member could act


def test_alc_names_fine_tuned_configurations_in_order_and_forced_methods(tmp_path):
    bench = _load("alc")
    (tmp_path / "ingestion.log").write_text(
        "x [train] round 1 (dtd): 3 steps\nx [train] round 2 (dtd): 4 steps\nx [train] round 3 (mnist): 1 steps\n")
    assert bench.fine_tuned(tmp_path) == ["dtd", "mnist"]
    assert bench.fine_tuned(tmp_path / "absent") == []
    assert bench.method_of("forced dtd")[1] == {"AUTODL_CONFIG": "dtd"}
    assert bench.method_of("forced default")[1] == {"AUTODL_CONFIG": "default"}
    with pytest.raises(SystemExit, match="unknown method 'forced '"):
        bench.method_of("forced ")
