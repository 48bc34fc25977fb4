"""Traffic replay: counter/gauge consistency under time compression, backfill text, demo chart."""

from __future__ import annotations

import numpy as np

from mpcloud_operator.devenv.demo import chart
from mpcloud_operator.devenv.prometheus import config_text
from mpcloud_operator.devenv.traffic import Replay, daily_ramp


def test_counter_rate_times_tick_is_requests_per_trace_minute():
    r = Replay(np.array([10.0, 20.0, 30.0, 40.0]), [("ns", "a")], tick_seconds=2.0, start=1, t0=1000.0)
    assert r.position(1000.0) == 1 and r.position(1003.0) == 2.5
    assert r.demand(1001.0) == 20 and r.demand(1002.5) == 30
    rate = (r.counter(1002.0) - r.counter(1000.0)) / 2.0  # per second over trace minute 1
    assert rate * 2.0 == 20  # x tick seconds = requests per trace minute
    assert r.counter(10_000) == 100  # flat after the trace ends


def test_openmetrics_backfill_is_on_the_compressed_grid_and_ends_with_eof():
    r = Replay(np.arange(100, dtype=float), [("ns", "a")], tick_seconds=2.0, start=50, t0=1000.0)
    text = r.openmetrics(history=10, end=1000.0, samples_per_minute=2)
    lines = [line for line in text.splitlines() if line.startswith("mpcloud_app_requests_total")]
    assert len(lines) == 20  # 10 trace minutes x 2 samples
    first_ts = float(lines[0].rsplit(" ", 1)[1])
    assert first_ts == 1000.0 - 10 * 2.0
    assert text.rstrip().endswith("# EOF")


def test_daily_ramp_shape():
    x = daily_ramp(days=2, seed=1)
    assert len(x) == 2880 and x[600 + 10] > 1000 and x[100] < 100


def test_chart_marks_underprovisioned_minutes():
    out = chart([(1, 60, 1), (2, 500, 1), (3, 500, 6)], capacity=100, width=20)
    lines = out.splitlines()
    assert "!" in lines[2] and "!" not in lines[3] and "|" in lines[3]


def test_prometheus_config_scrapes_file_sd_targets_with_honor_labels(tmp_path):
    text = config_text("500ms", tmp_path)
    assert "honor_labels: true" in text and f"{tmp_path}/*.json" in text and "scrape_interval: 500ms" in text
