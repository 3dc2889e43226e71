"""Learning-curve figures in the layout of the official scorer (protocol §3.7)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from scoring.metrics import auc_step, transform_time  # noqa: E402

__all__ = ["plot_learning_curve", "save_learning_curve", "new_axes"]

SECOND_TICKS = (10, 60, 300, 600, 1200)


def new_axes(task_name: str, time_budget: float, t0: float) -> Figure:
    """An empty figure with the official axes: transformed time below, seconds on top."""
    fig = plt.figure(figsize=(7, 7.07))
    ax = fig.add_subplot(111)
    ax.set_title(f"Learning curve for task: {task_name}", y=1.06)
    ax.set_xlabel("Transformed time: " + r"$\tilde{t} = \frac{\log (1 + t / t_0)}{ \log (1 + T / t_0)}$ "
                  + f" ($T = {int(time_budget)}$,  $t_0 = {int(t0)}$)")
    ax.set_xlim(left=0, right=1)
    ax.set_ylabel("score (2 * AUC - 1)")
    ax.set_ylim(bottom=-0.01, top=1)
    ax.grid(True, zorder=5)
    ax2 = ax.twiny()
    ticks = [t for t in SECOND_TICKS if t <= time_budget] + list(range(1800, int(time_budget) + 1, 1800))
    if time_budget not in ticks:
        ticks.append(time_budget)
    ax2.set_xticks([float(transform_time(t, time_budget, t0)) for t in ticks])
    ax2.set_xticklabels([f"{t:g}" for t in ticks])
    ax2.set_xlim(0, 1)
    return fig


def plot_learning_curve(timestamps: Sequence[float], scores: Sequence[float], *, time_budget: float,
                        t0: float, task_name: str, fig: Figure | None = None, label: str | None = None,
                        fill: bool = True, **line_kwargs: object) -> tuple[float, Figure]:
    """Draw a step curve; return (ALC of the drawn curve, figure).

    Points after T are left out of the drawing, as the kit's plot does (the score keeps them).
    """
    points = [(t, s) for t, s in zip(timestamps, scores) if t <= time_budget]
    x = [0.0, *(float(transform_time(t, time_budget, t0)) for t, _ in points)]
    y = [0.0, *(s for _, s in points)]
    fig = fig if fig is not None else new_axes(task_name, time_budget, t0)
    ax = fig.axes[0]
    x.append(1.0)
    y.append(y[-1])
    area = auc_step(x, y)
    text = f"ALC={area:.4f}" if label is None else f"{label}: ALC={area:.4f}"
    line_kwargs.setdefault("marker", "o")
    line_kwargs.setdefault("markersize", 3)
    (line,) = ax.plot(x[:-1], y[:-1], drawstyle="steps-post", label=text, **line_kwargs)
    if fill:
        ax.fill_between(x, y, color="cyan", step="post")
    ax.text(x[-1], y[-1], f"{y[-1]:.4f}")
    ax.plot(x[-2:], y[-2:], linestyle="--", linewidth=1, color=line.get_color())
    ax.legend()
    return area, fig


def save_learning_curve(path: str, timestamps: Sequence[float], scores: Sequence[float], *,
                        time_budget: float, t0: float, task_name: str) -> float:
    area, fig = plot_learning_curve(timestamps, scores, time_budget=time_budget, t0=t0, task_name=task_name)
    fig.savefig(path)
    plt.close(fig)
    return area
