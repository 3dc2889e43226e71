"""Offline half of the method: search space, BOHB tuning, performance matrix, portfolio reduction,
selection regret and the submission bundle."""

import learner  # noqa: F401  (triton guard before torch)
