"""The local PostgreSQL's pure parts: pg_hba, where its state lives."""

from __future__ import annotations

from pathlib import Path

from mpcloud_operator.devenv import postgres


def test_hba_allows_only_scram_over_tcp_from_loopback_and_the_given_subnets():
    lines = [ln for ln in postgres.hba_text(["10.88.0.0/24"]).splitlines() if not ln.startswith("#")]
    assert lines == ["host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256",
                     "host all all 10.88.0.0/24 scram-sha-256"]


def test_state_under_mpcloud_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MPCLOUD_HOME", str(tmp_path))
    assert postgres.default_base() == Path(tmp_path) / "postgres"

