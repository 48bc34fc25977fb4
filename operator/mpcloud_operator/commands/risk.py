"""`mpcloud risk report [-n NS] [--findings]`: what the RiskPolicies found, from the PolicyReports.

    mpcloud risk report                 # every namespace: one line per PolicyReport
    mpcloud risk report -n shop --findings   # and each fail/warn result under it

The reports are wgpolicyk8s.io/v1alpha2 PolicyReports (riskpolicy/reports.py): any other tool's (Kyverno's) are
listed too, with their own source.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from mpcloud_operator.commands import kube_client

COLUMNS = ("NAMESPACE", "REPORT", "SOURCE", "PASS", "FAIL", "WARN", "FINDINGS BY RULE")


def _row(report: dict[str, Any]) -> tuple[str, ...]:
    meta, summary = report.get("metadata") or {}, report.get("summary") or {}
    results = report.get("results") or []
    by_rule = Counter(r.get("rule") or r.get("policy", "?") for r in results if r.get("result") in ("fail", "warn"))
    sources = sorted({r.get("source", "") for r in results if r.get("source")}) or ["-"]
    return (meta.get("namespace", ""), meta.get("name", ""), ",".join(sources), str(summary.get("pass", 0)),
            str(summary.get("fail", 0)), str(summary.get("warn", 0)),
            ", ".join(f"{rule} {n}" for rule, n in sorted(by_rule.items())) or "-")


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def summary(reports: list[dict[str, Any]], findings: bool = False) -> str:
    """The report table (pure): one line per report, then with `findings` its fail/warn results."""
    reports = sorted(reports, key=lambda r: (r["metadata"].get("namespace", ""), r["metadata"]["name"]))
    if not reports:
        return "no PolicyReports"
    lines = [table([COLUMNS, *(_row(r) for r in reports)])]
    if findings:
        for rep in reports:
            results = [r for r in rep.get("results") or [] if r.get("result") in ("fail", "warn")]
            if not results:
                continue
            lines.append(f"\n{rep['metadata'].get('namespace', '')}/{rep['metadata']['name']}:")
            rows = [("RESULT", "RULE", "RESOURCE", "MESSAGE")]
            for r in sorted(results, key=lambda r: (r["result"] != "fail", r.get("rule", ""))):
                res = (r.get("resources") or [{}])[0]
                rows.append((r["result"], r.get("rule", ""), f"{res.get('kind', '')}/{res.get('name', '')}",
                             r.get("message", "")[:120]))
            lines.append(table(rows))
    return "\n".join(lines)


@click.group("risk")
def risk() -> None:
    """RiskPolicy findings."""


@risk.command("report")
@click.option("-n", "--namespace", default=None, help="One namespace (default: every namespace).")
@click.option("--findings", is_flag=True, help="List each fail/warn result under its report.")
@click.option("--kubeconfig", default=None, help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config).")
def report(namespace: str | None, findings: bool, kubeconfig: str | None) -> None:
    """Summary table of the PolicyReports (pass/fail/warn and findings per rule)."""
    kube = kube_client(kubeconfig)
    items, token = [], None
    while True:
        page = kube.list("PolicyReport", namespace, query=[("limit", "500")] + ([("continue", token)] if token else []))
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            break
    click.echo(summary(items, findings))
