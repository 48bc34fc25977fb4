"""`mpcloud traffic replay`: play a trace as an app's request counter for Prometheus to scrape."""

from __future__ import annotations

import signal
import threading

import click


@click.group("traffic")
def traffic() -> None:
    """Synthetic load for local runs of the scaling loop."""


@traffic.command()
@click.option("--trace", "trace_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--series", default=None, help="series id (default: the file's first)")
@click.option("--app", "apps", required=True, multiple=True, help="NAMESPACE/NAME the traffic belongs to (repeatable)")
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="trace minutes per wall minute; run the operator with MPCLOUD_SCALING_TICK_SECONDS=60/speedup")
@click.option("--start", type=int, default=None, help="trace minute (from the trace's start) played now "
              "(default: right after the backfilled history)")
@click.option("--history", type=int, default=3 * 1440, show_default=True, help="trace minutes to backfill")
@click.option("--no-backfill", is_flag=True)
def replay(trace_path, series, apps, speedup, start, history, no_backfill) -> None:
    """Backfill the trace's past into the local Prometheus, then replay it from --start (Ctrl-C stops)."""
    from predictors.traces import load_trace
    from mpcloud_operator.scaling import promserver
    from mpcloud_operator.scaling.traffic import start_replay

    pairs = []
    for a in apps:
        if "/" not in a:
            raise click.BadParameter(f"expected NAMESPACE/NAME, got {a!r}")
        pairs.append(tuple(a.split("/", 1)))
    s = next(iter(load_trace(trace_path, series).values()))
    tick = 60.0 / speedup
    if not promserver.is_running():
        raise click.ClickException("Prometheus is not running: `mpcloud prometheus up` first")
    server = start_replay(s.counts, pairs, tick, start, history, backfill=not no_backfill)
    r = server.replay
    click.echo(f"replaying {s.series_id} from trace minute {r.start} on 127.0.0.1:{server.port}/metrics "
               f"(1 trace minute = {tick:g} s; operator: MPCLOUD_SCALING_TICK_SECONDS={tick:g})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(tick):
            import time
            now = time.time()
            click.echo(f"trace minute {r.position(now):9.1f}  demand {r.demand(now):10.1f}/min")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
