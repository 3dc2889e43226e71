"""The official files: exact text and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoring import files


def test_prediction_format_and_round_trip(tmp_path: Path) -> None:
    prediction = np.array([[0.123456789, 1e-7, 1.0], [0.9999996, 0.5, 12345678.0]], dtype=np.float32)
    assert files.format_prediction(prediction) == "0.123457 1e-07 1\n1 0.5 1.23457e+07\n"
    path = tmp_path / "task.predict_0"
    files.write_prediction(str(path), prediction)
    assert path.read_text() == files.format_prediction(prediction)
    np.testing.assert_allclose(files.read_prediction(str(path)), prediction, rtol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["task.predict_0"]  # no temporary file left


def test_prediction_files_sorted_numerically(tmp_path: Path) -> None:
    for i in (10, 2, 0, 1):
        (tmp_path / f"t.predict_{i}").write_text("0\n")
    (tmp_path / "other.predict_5").write_text("0\n")
    assert [Path(p).name for p in files.prediction_files(str(tmp_path), "t")] == [
        "t.predict_0", "t.predict_1", "t.predict_2", "t.predict_10"]


def test_start_and_end_files(tmp_path: Path) -> None:
    start = tmp_path / "start.txt"
    files.write_start(str(start), pid=123, task_name="mini", time_budget=1200, start_time=1000.5)
    files.append_timestamp(str(start), 0, 1010.25)
    files.append_timestamp(str(start), 1, 1100.0)
    assert start.read_text() == ("ingestion_pid: 123\ntask_name: mini\ntime_budget: 1200\nstart_time: 1000.5\n"
                                 "0: 1010.25\n1: 1100.0\n")
    info = files.read_start(str(start))
    assert info.relative_timestamps() == [9.75, 99.5] and info.ingestion_pid == 123
    assert files.read_start(str(tmp_path / "missing.txt")) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["start.txt"]  # no temporary file left
    end = tmp_path / "end.txt"
    files.write_end(str(end), duration=12.5, success=False, end_time=1013.0)
    assert end.read_text() == "ingestion_duration: 12.5\ningestion_success: 0\nend_time: 1013.0\n"
    assert files.read_end(str(end)) == {"ingestion_duration": 12.5, "ingestion_success": 0, "end_time": 1013.0}


def test_scores_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.txt"
    files.write_scores(str(path), score=np.float64(0.5), duration=9.75, timestamps=[1.5, 9.75],
                       nauc_scores=[np.float64(0.25), np.float64(0.5)], accuracy=[0.1, 0.2])
    assert path.read_text() == ("score: 0.5\nDuration: 9.75\ntimestamps: [1.5, 9.75]\n"
                                "nauc_scores: [0.25, 0.5]\naccuracy: [0.1, 0.2]\n")
    assert files.read_scores(str(path))["nauc_scores"] == [0.25, 0.5]
    files.write_scores(str(path), score=0.0, duration=0.0, timestamps=[], nauc_scores=[], accuracy=None)
    assert path.read_text() == "score: 0\nDuration: 0\ntimestamps: []\nnauc_scores: []\n"


def test_html_embeds_pngs(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG fake")
    files.write_html(str(tmp_path), auto_refresh=False)
    html = (tmp_path / "detailed_results.html").read_text()
    assert html.startswith("<html><body><pre>") and "base64,iVBORyBmYWtl" in html


def test_files_being_written_are_not_read_yet(tmp_path: Path) -> None:
    """A scorer polls while ingestion writes: an empty start.txt is no start yet, a timestamp line being
    appended is no timestamp yet, and an end.txt without its status is no end yet."""
    start, end = tmp_path / "start.txt", tmp_path / "end.txt"
    start.write_text("")
    assert files.read_start(str(start)) is None
    start.write_text("ingestion_pid: 123\ntask_name: mini\ntime_b")
    assert files.read_start(str(start)) is None
    start.write_text("ingestion_pid: 123\ntask_name: mini\ntime_budget: 60\nstart_time: 10.0\n0: 12.5\n1: 1")
    assert files.read_start(str(start)).relative_timestamps() == [2.5]
    end.write_text("ingestion_duration: 12.5\n")
    assert files.read_end(str(end)) is None
    end.write_text("ingestion_duration: 12.5\ningestion_success: 1\nend_t")
    assert files.read_end(str(end)) == {"ingestion_duration": 12.5, "ingestion_success": 1}
