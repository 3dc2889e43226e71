"""AutoDL submission: meta-learned transfer learning (thin adapter for the platform).

The platform imports `Model` from this file, constructs it with the train split's metadata
(outside the time budget) and alternates `train` and `test`. All logic lives in the packages
next to this file (`runtime/` and what it imports); the portfolio built offline lives in `bundle/`.
See `runtime/engine.py` for the flow and README.md for the settings.
"""

import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The platform appends the submission folder to the end of sys.path; our packages go first so that no
# installed distribution of the same name (`metadata`, `runtime`, ...) can shadow them.
if sys.path[:1] != [HERE]:
    sys.path.insert(0, HERE)

import learner  # noqa: E402,F401  (first: keeps triton out when TensorFlow is already loaded)
from runtime.classifier import AnytimeClassifier  # noqa: E402

logger = logging.getLogger("model")
BUNDLE = os.environ.get("AUTODL_BUNDLE", os.path.join(HERE, "bundle"))


class Model:
    """The AutoDL interface: `Model(metadata)`, `train`, `test`, `done_training`."""

    def __init__(self, metadata):
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._impl = AnytimeClassifier(metadata, BUNDLE)

    @property
    def done_training(self):
        return self._impl.done_training

    def train(self, dataset, remaining_time_budget=None):
        self._impl.train(dataset, remaining_time_budget=remaining_time_budget)

    def test(self, dataset, remaining_time_budget=None):
        return self._impl.test(dataset, remaining_time_budget=remaining_time_budget)
