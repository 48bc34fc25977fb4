"""`mpcloud replay`: replay a real trace through scaling policies (logic in predictors.replay)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _parse_event(text: str, start_minute: int) -> tuple[int, int, float]:
    """'start,end,multiplier' -> (start index, end index, multiplier); start/end in timestamp_minute units."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise click.BadParameter(f"expected 'start,end,multiplier', got {text!r}")
    return int(parts[0]) - start_minute, int(parts[1]) - start_minute, float(parts[2])


@click.command("replay")
@click.option("--trace", "trace_path", required=True, type=click.Path(exists=True, dir_okay=False), help="trace CSV(.gz)")
@click.option("--series", default=None, help="series id (default: the first one of the file)")
@click.option("--policies", default="hpa,predictive,oracle,fixed-peak", show_default=True,
              help="comma-separated: hpa, kpa, predictive, oracle, fixed-peak")
@click.option("--capacity", type=float, default=None, help="requests/min per replica (default p95 / 10)")
@click.option("--startup-delay", type=int, default=2, show_default=True, help="minutes until a new replica serves")
@click.option("--event", "events", multiple=True,
              help="declared event 'start,end,multiplier' (start/end in the trace's timestamp_minute units)")
@click.option("--warmup", type=int, default=None, help="minutes before metrics start (default n/4, 60..2880)")
@click.option("--window", default=None, help="plot window 'start,end' in timestamp_minute units (default: all)")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
def replay(trace_path, series, policies, capacity, startup_delay, events, warmup, window, out_dir) -> None:
    """Replay a trace minute by minute through scaling policies; write metrics JSON and a PNG plot."""
    from tqdm import tqdm

    from predictors.plot import plot_replay
    from predictors.replay import Event, replay as run_replay
    from predictors.traces import load_trace

    data = load_trace(trace_path, series)
    sid, s = next(iter(data.items()))
    names = [p.strip() for p in policies.split(",") if p.strip()]
    evs = [Event(*_parse_event(e, s.start_minute)) for e in events]
    n_online = sum(1 for p in names if p != "oracle")
    with tqdm(total=n_online * len(s), unit="min", disable=len(s) * n_online < 50_000) as bar:
        env, w, results = run_replay(s.counts, names, capacity=capacity, startup_delay=startup_delay,
                                     events=evs, warmup=warmup, progress=bar.update)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(trace_path).name.split('.')[0]}-{sid}".replace("/", "_")
    report = {
        "trace": str(trace_path),
        "series": sid,
        "capacity": env.capacity,
        "capacity_rule": "given" if capacity else "p95 of per-minute counts / 10",
        "startup_delay": env.startup_delay,
        "warmup_minutes": w,
        "events": [ev.__dict__ for ev in evs],
        "policies": {k: v.metrics for k, v in results.items()},
    }
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lo, hi = 0, len(s)
    if window:
        a, b = (int(v) for v in window.split(","))
        lo, hi = max(0, a - s.start_minute), min(len(s), b - s.start_minute)
        if lo >= hi:
            raise click.BadParameter(
                f"window {window} does not overlap the series ({s.start_minute},{s.start_minute + len(s)} in "
                "timestamp_minute units)", param_hint="--window")
    epoch = s.start_minute > 10_000_000  # epoch minutes (after 1989) vs trace offsets
    png = plot_replay(s.counts, results, env, out / f"{stem}.png", start=lo, end=hi, start_minute=s.start_minute,
                      epoch=epoch, title=f"{Path(trace_path).name} / {sid}: C = {env.capacity:.3g} req/min, D = {env.startup_delay} min")
    for k, v in results.items():
        m = v.metrics
        click.echo(f"{k:11s} under={m['under_minutes']:6d} min  unserved={100 * m['unserved_frac']:6.2f} %  "
                   f"replica-min={m['replica_minutes']:10.0f} (x{m['oracle_ratio']:.2f} oracle)  actions={m['scaling_actions']}")
    click.echo(f"wrote {out / (stem + '.json')} and {png}")
