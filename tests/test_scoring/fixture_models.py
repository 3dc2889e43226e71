"""Tiny `model.py` submissions for the runner tests, written to a folder on demand."""

from __future__ import annotations

from pathlib import Path

COMMON = '''
import os, time
import numpy as np

def _test_count(dataset):
    return sum(1 for _ in dataset)

def _solution():
    # Test-only cheat: the tests point the model at the solution to control its score exactly.
    return np.loadtxt(os.environ["FIXTURE_SOLUTION"], ndmin=2)
'''

MODELS = {
    "constant": '''
class Model:
    def __init__(self, metadata):
        self.k = metadata.get_output_size()
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
        self.done_training = self.rounds >= 3
    def test(self, dataset, remaining_time_budget=None):
        return np.zeros((_test_count(dataset), self.k))
''',
    "improving": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
        time.sleep(0.3)
        self.done_training = self.rounds >= 4
    def test(self, dataset, remaining_time_budget=None):
        y = _solution()
        noise = np.random.default_rng(0).random(y.shape)
        w = self.rounds / 4.0  # the last round is perfect
        return w * y + (1 - w) * noise
''',
    "crash": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
        if self.rounds == 3:
            raise RuntimeError("boom in train call 3")
    def test(self, dataset, remaining_time_budget=None):
        return _solution()
''',
    "overrun": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
        if self.rounds == 2:
            time.sleep(3600)
    def test(self, dataset, remaining_time_budget=None):
        return _solution()
''',
    "wrong_shape": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
    def train(self, dataset, remaining_time_budget=None):
        pass
    def test(self, dataset, remaining_time_budget=None):
        return _solution().T
''',
    "done_training": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
        self.budgets = []
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
        self.budgets.append(remaining_time_budget)
        if self.rounds == 2:
            self.done_training = True  # the kit still calls test once more
    def test(self, dataset, remaining_time_budget=None):
        return _solution()
''',
    "returns_none": '''
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        self.rounds += 1
    def test(self, dataset, remaining_time_budget=None):
        return None if self.rounds == 2 else _solution()
''',
    "ignores_sigterm": '''
import signal
class Model:
    def __init__(self, metadata):
        self.done_training = False
        self.rounds = 0
    def train(self, dataset, remaining_time_budget=None):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.rounds += 1
        if self.rounds == 2:
            while True:
                time.sleep(0.1)
    def test(self, dataset, remaining_time_budget=None):
        return _solution()
''',
    "init_fails": '''
class Model:
    def __init__(self, metadata):
        raise ValueError("cannot build")
''',
}


def write_model(folder: Path, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(COMMON + MODELS[kind])
    return folder
