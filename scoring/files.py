"""The files ingestion and scoring exchange, byte-compatible with the AutoDL kit (protocol §2-3).

`<task>.predict_<i>` (rows of `{:g}` values joined by single spaces, written atomically),
`start.txt`, `end.txt`, `scores.txt` and `detailed_results.html`.
"""

from __future__ import annotations

import base64
import glob
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

__all__ = ["IngestionInfo", "format_prediction", "write_prediction", "read_prediction", "prediction_files",
           "write_start", "append_timestamp", "read_start", "write_end", "read_end", "write_scores",
           "read_scores", "write_html"]


def format_prediction(prediction: np.ndarray) -> str:
    """The text of a prediction file: one line per row, values as `{:g}` separated by one space."""
    lines = []
    for row in prediction:
        if not isinstance(row, (np.ndarray, list)):
            row = [row]
        lines.append(" ".join("{0:g}".format(float(v)) for v in row) + "\n")
    return "".join(lines)


def write_prediction(path: str, prediction: np.ndarray) -> None:
    """Write atomically: a temporary file in the same folder, then a rename, as the kit does."""
    tmp = os.path.join(os.path.dirname(path) or ".", f"temp_prediction_file_{random.randrange(10000)}")
    with open(tmp, "w") as f:
        f.write(format_prediction(prediction))
    os.replace(tmp, path)


def read_prediction(path: str) -> np.ndarray:
    """Load a prediction (or solution) file as float `[N, K]` (a single column stays 2-D)."""
    return np.loadtxt(path, ndmin=2)


def prediction_files(prediction_dir: str, task: str) -> list[str]:
    """`<task>.predict_<i>` files sorted by i."""
    files = glob.glob(os.path.join(prediction_dir, f"{task}.predict_*"))
    return sorted(files, key=lambda p: int(p.rsplit("_", 1)[-1]))


@dataclass
class IngestionInfo:
    """What `start.txt` says: pid, task, budget, start time and one timestamp per prediction."""

    ingestion_pid: int
    task_name: str
    time_budget: float
    start_time: float
    timestamps: list[float] = field(default_factory=list)

    def relative_timestamps(self) -> list[float]:
        return [t - self.start_time for t in self.timestamps]


def _write_whole(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: a reader never finds it partly written."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_start(path: str, *, pid: int, task_name: str, time_budget: float | int, start_time: float) -> None:
    _write_whole(path, f"ingestion_pid: {pid}\ntask_name: {task_name}\ntime_budget: {time_budget}\n"
                       f"start_time: {start_time}\n")


def append_timestamp(path: str, index: int, timestamp: float) -> None:
    with open(path, "a") as f:
        f.write(f"{index}: {timestamp}\n")


_START_KEYS = ("ingestion_pid", "time_budget", "start_time")


def _complete_lines(path: str) -> Any:
    """The YAML of a file's complete lines: a line its writer has not finished is not read."""
    with open(path) as f:
        text = f.read()
    return yaml.safe_load(text[:text.rfind("\n") + 1])


def read_start(path: str) -> IngestionInfo | None:
    """Parse `start.txt` (YAML, as the official scorer reads it); None if it does not exist yet, or while
    ingestion is still writing its header (the file exists from the moment it is opened: a scorer that
    polls can find it empty). Only complete lines are read: a timestamp line being appended is not yet
    a timestamp."""
    if not os.path.exists(path):
        return None
    info = _complete_lines(path)
    if not isinstance(info, dict) or any(key not in info for key in _START_KEYS):
        return None
    timestamps = []
    while len(timestamps) in info:
        timestamps.append(float(info[len(timestamps)]))
    return IngestionInfo(ingestion_pid=int(info["ingestion_pid"]), task_name=str(info.get("task_name", "")),
                         time_budget=info["time_budget"], start_time=float(info["start_time"]),
                         timestamps=timestamps)


def write_end(path: str, *, duration: float, success: bool, end_time: float) -> None:
    _write_whole(path, f"ingestion_duration: {duration}\ningestion_success: {int(success)}\nend_time: {end_time}\n")


def read_end(path: str) -> dict | None:
    """`end.txt`'s fields; None if it does not exist or is not complete yet (no `ingestion_success`)."""
    if not os.path.exists(path):
        return None
    end = _complete_lines(path)
    return end if isinstance(end, dict) and "ingestion_success" in end else None


def _float_list(values: Sequence[float]) -> str:
    # Python floats, as the kit printed them before NumPy 2 changed the repr of np.float64.
    return str([float(v) for v in values])


def write_scores(path: str, *, score: float, duration: float, timestamps: Sequence[float],
                 nauc_scores: Sequence[float], accuracy: Sequence[float] | None) -> None:
    """`scores.txt` as the kit's `write_score`; with no prediction, score and Duration are `0`."""
    with open(path, "w") as f:
        f.write(f"score: {score if timestamps else 0}\n")
        f.write(f"Duration: {duration if timestamps else 0}\n")
        f.write(f"timestamps: {_float_list(timestamps)}\n")
        f.write(f"nauc_scores: {_float_list(nauc_scores)}\n")
        if accuracy is not None:
            f.write(f"accuracy: {_float_list(accuracy)}\n")


def read_scores(path: str) -> dict:
    """Parse `scores.txt` into a dict (lists as lists of floats)."""
    with open(path) as f:
        return yaml.safe_load(f)


def write_html(score_dir: str, *, auto_refresh: bool = True, waiting: bool = False) -> None:
    """`detailed_results.html`: every PNG of `score_dir` inlined as base64, as the kit writes it."""
    path = os.path.join(score_dir, "detailed_results.html")
    head = ('<html><head> <meta http-equiv="refresh" content="5"> </head><body><pre>' if auto_refresh
            else "<html><body><pre>")
    end = "</pre></body></html>"
    if waiting:
        with open(path, "a") as f:
            f.write(head + "Starting training process... <br> Please be patient. Learning curves will be "
                    "generated when first predictions are made." + end)
        return
    with open(path, "w") as f:
        f.write(head)
        for image in sorted(glob.glob(os.path.join(score_dir, "*.png"))):
            with open(image, "rb") as img:
                encoded = base64.b64encode(img.read()).decode("utf-8")
            f.write(f'<img src="data:image/png;charset=utf-8;base64,{encoded}"/><br>')
        f.write(end)
