"""`mpcloud keepalive`: score function keep-alive / pre-warm policies on a per-minute invocation trace."""

from __future__ import annotations

import json
from pathlib import Path

import click

from predictors.keepalive.report import DEFAULT_POLICIES, evaluate, format_table, load_workload, pareto_plot


@click.command("keepalive")
@click.option("--trace", "trace", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Per-minute invocation trace (timestamp_minute,series_id,count; .csv or .csv.gz).")
@click.option("--meta", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Optional meta file: avg_allocated_mb per series_id (waste in MB·min; without it, minutes) and "
                   "trigger (mpcloud reads `timer`).")
@click.option("--policies", default=",".join(DEFAULT_POLICIES), show_default=True,
              help="Comma-separated: fixed-N, fixed-sweep, hybrid, hybrid-short, mpcloud, mpcloud-lLAMBDA, "
                   "never-unload, oracle. fixed-10 is always added as the reference.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
def keepalive(trace: str, meta: str | None, policies: str, out: str) -> None:
    """Simulate keep-alive policies; write keepalive.json and keepalive-pareto.png to OUT."""
    work = load_workload(trace, meta)
    try:
        result = evaluate(work, [p.strip() for p in policies.split(",") if p.strip()])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--policies") from exc
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "keepalive.json").write_text(json.dumps(result, indent=2) + "\n")
    pareto_plot(result, out_dir / "keepalive-pareto.png")
    click.echo(format_table(result))
    click.echo(f"wrote {out_dir / 'keepalive.json'} and {out_dir / 'keepalive-pareto.png'}")
