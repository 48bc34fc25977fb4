"""`mpcloud anomaly`: the abnormal-traffic detector offline (logic in predictors.anomaly)."""

from __future__ import annotations

import click


@click.group("anomaly")
def anomaly() -> None:
    """Abnormal-traffic detection: score the online detector on labelled series."""


@anomaly.command("nab")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder of NAB-format files (<folder>/<name>.csv[.gz], header timestamp,value)")
@click.option("--windows", "windows_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help='label windows JSON {"<folder>/<name>.csv": [["start", "end"], ...]}')
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--no-scores", is_flag=True, help="do not write the per-file score CSVs (scores/<folder>/<name>.csv)")
def nab(data_dir: str, windows_file: str, out_dir: str, no_scores: bool) -> None:
    """Run the detector over every *.csv[.gz] under DATA and write OUT/nab.json with NAB scores per profile
    (threshold re-optimised on these files, and under `fixed_threshold` the detector's shipped threshold)."""
    from predictors.anomaly.nab_run import run_nab

    try:
        report = run_nab(data_dir, windows_file, out_dir, write_scores=not no_scores)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    d = report["details"]
    click.echo(f"{d['files']} files, {d['windows']} windows")
    click.echo(f"{'profile':20s} {'re-optimised':>12s} {'fixed θ':>9s}")
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        click.echo(f"{name:20s} {report[name]:12.2f} {report['fixed_threshold'][name]:9.2f}")
    click.echo(f"wrote {out_dir}/nab.json")
