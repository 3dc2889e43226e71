"""benchmarks/edge_cases.py: its datasets are valid, deterministic AutoDL datasets of the shapes it names."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metadata.check import check_dataset, read_solution
from scoring.metrics import valid_columns

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module():
    spec = importlib.util.spec_from_file_location("edge_cases", BENCH / "edge_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case, shape, classes, multilabel", [
    ("ml20", (1, 48, 48, 3), 20, True), ("vid_gray", (16, 40, 40, 1), 5, False), ("varsize", (1, -1, -1, 3), 3, False)])
def test_cases_write_valid_datasets(tmp_path: Path, case: str, shape: tuple, classes: int, multilabel: bool) -> None:
    edge = _module()
    _, write = edge.CASES[case]
    write(str(tmp_path / case), np.random.default_rng(0))
    report = check_dataset(str(tmp_path / case))
    assert report.shape == shape and report.output_dim == classes
    assert report.splits["train"].multilabel == multilabel
    assert valid_columns(read_solution(report.solution_path)).any()  # the runner can score it
    write(str(tmp_path / "again"), np.random.default_rng(0))  # deterministic
    assert np.array_equal(read_solution(report.solution_path),
                          read_solution(check_dataset(str(tmp_path / "again")).solution_path))


def test_unknown_case_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        _module().main(["--cases", "tiny,nonsense"])
    assert "unknown case(s) nonsense" in capsys.readouterr().err


def test_a_case_run_alone_gets_the_data_of_a_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case's data are seeded by its place in CASES, not by its place in `--cases`."""
    edge = _module()
    drawn: dict[str, list[int]] = {}

    def recorder(name: str):
        def write(out: str, rng: np.random.Generator) -> None:
            drawn.setdefault(name, []).append(int(rng.integers(1 << 30)))
            Path(out).mkdir(parents=True)
        return write

    monkeypatch.setattr(edge, "CASES", {name: (what, recorder(name)) for name, (what, _) in edge.CASES.items()})
    outcome = SimpleNamespace(first_prediction_time=None, scores=[], alc=0.0)
    monkeypatch.setattr(edge, "run_local", lambda *a, **k: SimpleNamespace(outcome=outcome, exit_code=0))
    edge.main(["--cases", "tiny,bigtest", "--out", str(tmp_path / "sweep")])
    edge.main(["--cases", "bigtest", "--out", str(tmp_path / "alone")])
    assert drawn["bigtest"][0] == drawn["bigtest"][1]
    assert drawn["bigtest"][0] == int(np.random.default_rng(list(edge.CASES).index("bigtest")).integers(1 << 30))
