"""The run-time flow: what `model.py` runs inside the time budget, and what the offline objective reuses.

`runtime.engine` is the one anytime engine (phases, clock, fault boundary); `runtime.classifier`
wires a bundled portfolio (manifest, fingerprint network, selector, configurations) to it. This
package, and what it imports, is exactly what the submission zip carries besides the bundle: it
imports only the platform's packages (TensorFlow, torch, torchvision, NumPy, scikit-learn) and
never `portfolio/`.
"""

import learner  # noqa: F401  (triton guard before torch)
