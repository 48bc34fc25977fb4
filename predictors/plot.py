"""Plot a replay: demand vs provisioned capacity per policy, under-provisioned minutes shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predictors.replay import Env, RunResult


def plot_replay(
    demand: np.ndarray,
    results: dict[str, RunResult],
    env: Env,
    out: str | Path,
    *,
    start: int = 0,
    end: int | None = None,
    title: str = "",
    start_minute: int = 0,
    epoch: bool = False,
) -> Path:
    """Write a PNG with one panel per policy for minutes [start, end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = len(demand) if end is None else end
    if not 0 <= start < end <= len(demand):
        raise ValueError(f"plot window [{start}, {end}) is empty or outside the series (0 .. {len(demand)})")
    names = [n for n in results if n != "oracle"] or list(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 2.3 * len(names) + 0.6), sharex=True, squeeze=False)
    idx = np.arange(start, end)
    if epoch:
        x = (start_minute + idx).astype("datetime64[m]")
    else:
        x = start_minute + idx
    r = np.nan_to_num(np.asarray(demand, dtype=float))[start:end]
    for ax, name in zip(axes[:, 0], names):
        res = results[name]
        cap = res.serving[start:end] * env.capacity
        ax.plot(x, r, color="black", lw=0.6, label="demand")
        ax.plot(x, cap, color="tab:blue", lw=0.9, drawstyle="steps-post", label="capacity")
        if "oracle" in results and name != "oracle":
            ax.plot(x, results["oracle"].serving[start:end] * env.capacity, color="tab:green", lw=0.5, alpha=0.6,
                    drawstyle="steps-post", label="oracle")
        under = r > cap + 1e-9
        ymax = float(max(r.max(initial=0), cap.max(initial=0))) * 1.05 or 1.0
        ax.fill_between(x, 0, ymax, where=under, color="tab:red", alpha=0.35, step="post", label="under-provisioned")
        m = res.metrics
        ax.set_title(f"{name}: under {m.get('under_minutes')} min, replica-min x{m.get('oracle_ratio', float('nan')):.2f} "
                     f"oracle, unserved {100 * m.get('unserved_frac', 0):.2f} %", fontsize=9, loc="left")
        ax.set_ylim(0, ymax)
        ax.set_ylabel("req/min")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=4)
    fig.suptitle(title or f"replay (C = {env.capacity:.3g} req/min per replica, D = {env.startup_delay} min)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
