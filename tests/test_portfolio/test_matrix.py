"""The performance matrix on a local process pool and on a Dask cluster; crashes stay crashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learner.config import TrainConfig
from portfolio.matrix import read_matrix, run_matrix

OBJECTIVE = "tests.test_portfolio.objectives:table"


@pytest.fixture
def setup(make_array_dataset, tmp_path: Path) -> tuple[Path, list[str]]:
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("good", "crashy", "bad"):
        TrainConfig(backbone="resnet18", weights=None, name=name).save(str(configs / f"{name}.json"))
    datasets = [str(make_array_dataset(n)[0]) for n in ("a", "b")]
    return configs, datasets


def _check(matrix: dict, out: Path) -> None:
    assert matrix["a"]["good"] == pytest.approx(0.795) and matrix["a"]["crashy"] == pytest.approx(0.895)
    assert matrix["b"]["crashy"] is None and matrix["b"]["bad"] == pytest.approx(0.195)
    written = read_matrix(str(out))
    for d in matrix:
        for c in matrix[d]:
            assert written[d][c] == (None if matrix[d][c] is None else pytest.approx(matrix[d][c], abs=1e-6))
    lines = out.read_text().splitlines()
    assert lines[0] == "dataset,bad,crashy,good" and lines[2].split(",")[2] == ""
    records = [json.loads(r) for r in Path(str(out) + ".runs.jsonl").read_text().splitlines()]
    crashes = [r for r in records if r["status"] == "crash"]
    assert len(records) == 12 and len(crashes) == 2
    assert all(c["dataset"] == "b" and "out of memory" in c["error"] for c in crashes)


def test_local_executor_and_resume(setup, tmp_path: Path) -> None:
    configs, datasets = setup
    out = tmp_path / "m.csv"
    matrix = run_matrix(str(configs), datasets, repeats=2, budget=1, executor="local:2", out=str(out),
                        objective=OBJECTIVE, progress=False)
    _check(matrix, out)
    again = run_matrix(str(configs), datasets, repeats=2, budget=1, executor="local:2", out=str(out),
                       objective=OBJECTIVE, progress=False)  # every job is in the sidecar: nothing reruns
    assert len(Path(str(out) + ".runs.jsonl").read_text().splitlines()) == 12 and again["a"] == matrix["a"]


@pytest.mark.slow  # starting a local Dask cluster takes half a minute here (`make test-all`)
def test_dask_local_cluster(setup, tmp_path: Path) -> None:
    from distributed import LocalCluster

    configs, datasets = setup
    out = tmp_path / "d.csv"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        matrix = run_matrix(str(configs), datasets, repeats=2, budget=1, executor=f"dask:{cluster.scheduler_address}",
                            out=str(out), objective=OBJECTIVE, progress=False)
    _check(matrix, out)


def test_a_configuration_brings_its_settings_file(setup, tmp_path: Path) -> None:
    configs, datasets = setup
    (configs / "good.settings.json").write_text(json.dumps({"patience": 7}))
    matrix = run_matrix(str(configs), datasets, repeats=1, budget=1, executor="local:1", out=str(tmp_path / "s.csv"),
                        objective="tests.test_portfolio.objectives:patience", progress=False)
    assert set(matrix["a"]) == {"good", "crashy", "bad"}  # the settings file is no column
    assert matrix["a"]["good"] == pytest.approx(0.7) and matrix["a"]["bad"] == pytest.approx(0.0)
    (configs / "good.settings.json").write_text(json.dumps({"cv_folds": 3}))  # acts before selection
    with pytest.raises(ValueError, match=r"good\.settings\.json: cv_folds act"):
        run_matrix(str(configs), datasets, repeats=1, budget=1, executor="local:1", out=str(tmp_path / "t.csv"),
                   objective="tests.test_portfolio.objectives:patience", progress=False)


def test_bad_matrix_files(tmp_path: Path) -> None:
    (tmp_path / "short.csv").write_text("dataset,a,b\nd1,0.5\n")
    with pytest.raises(ValueError, match=r"short\.csv: line 2 has 2 cells, expected 3"):
        read_matrix(str(tmp_path / "short.csv"))
    (tmp_path / "text.csv").write_text("dataset,a\nd1,high\n")
    with pytest.raises(ValueError, match=r"text\.csv: line 2"):
        read_matrix(str(tmp_path / "text.csv"))


def test_rank_correlation_of_two_fidelities() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fidelity", Path(__file__).parents[2] / "benchmarks" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    low = {"a": {"x": 0.1, "y": 0.2, "z": 0.3}, "b": {"x": 0.5, "y": 0.4, "z": None}}
    full = {"a": {"x": 0.6, "y": 0.7, "z": 0.9}, "b": {"x": 0.8, "y": 0.9, "z": 0.1}}
    overall, per_dataset, agree, compared = fidelity.correlations(low, full)
    # a: same order (rho 1, same best); b: z crashed at the low fidelity, x and y swap (rho -1, other best)
    assert per_dataset == pytest.approx(0.0) and (agree, compared) == (1, 2) and -1 <= overall <= 1
    with pytest.raises(ValueError, match="only 2 cells"):
        fidelity.correlations({"a": {"x": 0.1, "y": 0.2}}, {"a": {"x": 0.1, "y": 0.2}})
