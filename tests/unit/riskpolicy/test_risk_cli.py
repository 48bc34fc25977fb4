"""`mpcloud risk report`'s table, from PolicyReports as the scan loop writes them (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from mpcloud_operator.commands.risk import summary
from mpcloud_operator.riskpolicy import reports
from mpcloud_operator.riskpolicy.findings import Finding


def test_one_line_per_report_and_the_findings_under_it():
    found = [Finding("scans.secrets", "AWS Access Key in spec.source line 1", "fail", "shop/risk", "CloudFunction",
                     "mpcloud.io/v1alpha1", "shop", "leaky"),
             Finding("traffic.anomaly", "abnormal request rate 600/s", "warn", "shop/risk", "MiniProgramApp",
                     "mpcloud.io/v1alpha1", "shop", "web")]
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rep = reports.build_report({"metadata": {"name": "risk", "namespace": "shop"}}, "shop", found,
                               passed_rules=["scans.images"], now=now)
    clean = reports.build_report({"metadata": {"name": "risk", "namespace": "web"}}, "web", [],
                                 passed_rules=["scans.images"], now=now)
    text = summary([rep, clean]).splitlines()
    assert text[0].split() == ["NAMESPACE", "REPORT", "SOURCE", "PASS", "FAIL", "WARN", "FINDINGS", "BY", "RULE"]
    assert text[1].split() == ["shop", "mpcloud-risk", "mpcloud", "1", "1", "1", "scans.secrets", "1,",
                               "traffic.anomaly", "1"]
    assert text[2].split() == ["web", "mpcloud-risk", "mpcloud", "1", "0", "0", "-"]
    detailed = summary([rep], findings=True)
    assert "fail    scans.secrets    CloudFunction/leaky" in detailed
    assert summary([]) == "no PolicyReports"
