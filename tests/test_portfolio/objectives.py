"""Cheap objectives for the portfolio tests (imported by name in worker processes)."""

from __future__ import annotations

import math
from typing import Any


def quadratic(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """Best near learning rate 1e-3 and dropout 0.3; noisier at low budget; crashes above dropout 0.9."""
    if config["dropout"] > 0.9:
        raise RuntimeError(f"diverged at dropout {config['dropout']:.2f}")
    loss = (math.log10(config["learning_rate"]) + 3) ** 2 / 10 + (config["dropout"] - 0.3) ** 2 + 1.0 / budget
    return {"loss": loss, "info": {"budget": budget}}


def table(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """A matrix cell from a fixed table keyed by dataset and config name (config['name'])."""
    name, dataset = config["name"], context["dataset_name"]
    if name == "crashy" and dataset == "b":
        raise RuntimeError("out of memory")
    values = {"good": 0.8, "crashy": 0.9, "bad": 0.2}
    return {"loss": 1.0 - values[name] + 0.01 * context["repeat"], "info": {}}


def patience(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """A cell that reads the configuration's own settings (its settings file): ALC = patience / 10."""
    return {"loss": 1.0 - config.get("settings", {}).get("patience", 0) / 10, "info": {}}
