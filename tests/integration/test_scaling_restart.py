"""An operator restart costs at most two ticks of forecasting: real control plane, real Prometheus.

History lives in Prometheus (the source of truth); the operator keeps a rolling window in memory. After a
restart the new leader's scaler loads the window again (a small group gets it in one tick) and replays it
into its forecaster, so the app forecasts again by the new process's second tick at the latest. The
Prometheus restart is covered by test_predictive_scaling.py (history kept through the outage).
"""

from __future__ import annotations

import time
from datetime import datetime

from tests.integration.conftest import free_port
from tests.integration.test_miniprogramapp import Apps, app_body, wait_until
from tests.integration.test_predictive_scaling import TICK, condition, scaling, scaling_env, ticks
from tests.integration.test_predictive_scaling import pytestmark  # noqa: F401 - same markers and skip


def forecast_time(app: dict) -> float:
    at = ((app.get("status") or {}).get("forecast") or {}).get("generatedAt")
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() if at else 0.0


def test_operator_restart_forecasts_again_within_two_ticks(api_client, namespace, operator_factory, monkeypatch,
                                                          tmp_path):
    from mpcloud_operator.devenv import prometheus
    from mpcloud_operator.devenv.traffic import daily_ramp, start_replay

    base = tmp_path / "prometheus"
    url = prometheus.up(base, port=free_port(), scrape_interval="500ms")
    apps = Apps(api_client, namespace)
    server = None
    try:
        scaling_env(monkeypatch, url, namespace, f"restart-{namespace}")
        first = operator_factory("scaling-first", own_demand_port=True).start().wait_ready()
        apps.create(app_body("pred", scaling=scaling("predictive"), replicas={"min": 1, "max": 20}))
        apps.wait_ready("pred")
        server = start_replay(daily_ramp(), [(namespace, "pred")], tick_seconds=TICK, start=3 * 1440 + 60,
                              history=3 * 1440, base=base)

        def forecasting() -> bool:
            app = apps.get("pred")
            return condition(app, "ScalingDegraded").get("status") == "False" and forecast_time(app) > 0

        wait_until(forecasting, timeout=30 * TICK, interval=0.2, what="pred forecasting under the first operator")
        first.stop()
        stopped = time.time()
        second = operator_factory("scaling-second", own_demand_port=True).start().wait_ready()
        seen: list[tuple[int, str]] = []

        def forecasting_again() -> bool:
            app = apps.get("pred")
            c = condition(app, "ScalingDegraded")
            n = ticks(second)
            if not seen or seen[-1][1] != c.get("reason"):
                seen.append((n, c.get("reason")))
            return forecast_time(app) > stopped and c.get("status") == "False"

        # the new leader waits for the old lease to be released or to expire: wait on its ticks, not a clock
        wait_until(lambda: ticks(second) >= 1, timeout=60, interval=0.2, what="the new operator's first tick")
        wait_until(forecasting_again, timeout=10 * TICK, interval=0.1, what="pred forecasting again")
        n = ticks(second)
        print(f"\noperator restart: forecasting again after {n} tick(s) of the new operator "
              f"({time.time() - stopped:.1f} s after the old one stopped); conditions seen {seen}")
        assert n <= 2, (n, seen, second.log()[-3000:])
        # meanwhile at most a short warm-up, never a fallback for lack of history
        assert all(reason in ("AsExpected", "WarmingUp", None) for _, reason in seen), seen
    finally:
        if server is not None:
            server.stop()
        prometheus.down(base)
