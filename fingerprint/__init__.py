"""Dataset fingerprints: frozen-network features of a batch, and selectors that name the most
similar known dataset."""

import learner  # noqa: F401  (triton guard before torch)
