"""The traffic loop over the fake client and synthetic series: warm-up from history, one finding per burst,
the Event, the metric, the report and status; and the series sources."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from mpcloud_operator.config import OperatorConfig
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.riskpolicy import scan_loop, series, traffic_loop
from mpcloud_operator.riskpolicy.traffic import Series
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient
from tests.unit.riskpolicy.test_scan_loop import Clock, policy

APP = Series("MiniProgramApp", "mpcloud.io/v1alpha1", "shop", "web")


def app(name: str = "web", labels: dict | None = None) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": name, "namespace": "shop", "labels": labels or {}},
            "spec": {"image": "nginx:1.27"}}


class Scripted:
    """A series source playing fixed arrays: history first, then one value per tick."""

    def __init__(self, values: dict[Series, np.ndarray], history: int) -> None:
        self.values, self.cut = values, history
        self.at = {s: history for s in values}

    def current(self, wanted):
        out = {}
        for s in wanted:
            if s in self.values and self.at[s] < len(self.values[s]):
                out[s] = float(self.values[s][self.at[s]])
                self.at[s] += 1
        return out

    def history(self, wanted, points, step):
        return {s: self.values[s][max(0, self.cut - points):self.cut] for s in wanted if s in self.values}


def burst_series(seed: int = 3, n: int = 620, at: int = 560) -> np.ndarray:
    x = 50 + np.random.default_rng(seed).normal(0, 3, n)
    x[at:at + 12] = 600  # a bot burst: 12 ticks at 12x
    return x


def setup(*objects: dict, clock: Clock):
    kube = FakeClient(list(objects))
    rt = Runtime.for_kinds(kube, KINDS, config=OperatorConfig())
    for obj in kube.objects.values():
        rt.primaries.put((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]), obj)
    book = scan_loop.ReportBook(kube, open_seconds=3600, clock=clock)
    return kube, book, rt


def run(loop, clock, ticks: int) -> list:
    raised = []
    for _ in range(ticks):
        clock.t += 15
        raised += loop.tick()
    return raised


def test_a_burst_is_one_finding_with_an_event_a_metric_the_report_and_status():
    clock = Clock()
    kube, book, rt = setup(policy({"scans": {"enabled": False}}), app(), app("quiet"), clock=clock)
    quiet = Series("MiniProgramApp", "mpcloud.io/v1alpha1", "shop", "quiet")
    source = series.Sources({"MiniProgramApp": Scripted({APP: burst_series(), quiet: burst_series(0, at=10_000)},
                                                        history=500)}, 15)
    loop = traffic_loop.TrafficLoop(rt, book, source, 15, cooldown_seconds=600, clock=clock)
    before = traffic_loop.ANOMALIES.labels("shop", "MiniProgramApp", "web")._value.get()
    raised = run(loop, clock, 120)  # warmed on 500 past values: the burst at live tick 60 is scored
    assert [s for s, _ in raised] == [APP]  # 12 abnormal ticks, one finding (cooldown); the quiet app none
    assert traffic_loop.ANOMALIES.labels("shop", "MiniProgramApp", "web")._value.get() == before + 1
    (event,) = [a for a in kube.actions if a.verb == "event"]
    assert (event.kind, event.name, event.detail[0], event.detail[2]) == ("MiniProgramApp", "web", "AbnormalTraffic",
                                                                           "Warning")
    assert event.detail[1].startswith("[traffic.anomaly] abnormal request rate 600/s")
    rep = kube.objects[("PolicyReport", "shop", "mpcloud-risk")]
    (res,) = [r for r in rep["results"] if r["result"] != "pass"]
    assert (res["rule"], res["resources"][0]["name"], res["result"]) == ("traffic.anomaly", "web", "warn")
    assert kube.status_writes()[-1] == {"findings": {"traffic": 1}}
    clock.t += 3600  # open for an hour, then gone from the report and the count
    loop.tick()
    assert [r["result"] for r in kube.objects[("PolicyReport", "shop", "mpcloud-risk")]["results"]] == ["pass"]
    assert kube.status_writes()[-1] == {"findings": {"traffic": 0}}


def test_an_exempt_app_and_a_policy_with_traffic_off_raise_nothing():
    clock = Clock()
    kube, book, rt = setup(policy({"exceptions": [{"name": "load-test", "selector": {"matchLabels": {
        "load-test": "true"}}, "rules": ["traffic"]}]}), app(labels={"load-test": "true"}), clock=clock)
    source = series.Sources({"MiniProgramApp": Scripted({APP: burst_series()}, history=500)}, 15)
    loop = traffic_loop.TrafficLoop(rt, book, source, 15, cooldown_seconds=600, clock=clock)
    assert run(loop, clock, 120) == [] and not [a for a in kube.actions if a.verb == "event"]


def test_replay_file_serves_history_then_one_value_a_tick(tmp_path):
    path = tmp_path / "series.json"
    path.write_text(json.dumps({"MiniProgramApp/shop/web": [1, 2, 3, 4, 5]}))
    replay = series.ReplayFile(str(path))
    assert list(replay.history([APP], 3, 15)[APP]) == [1, 2, 3]
    assert [replay.current([APP]) for _ in range(3)] == [{APP: 4.0}, {APP: 5.0}, {}]


def test_prometheus_rates_one_query_for_every_app():
    calls = []

    class Prom:
        def query_range(self, query, start, end, step):
            calls.append((query, start, end, step))
            n = int(round((end - start) / step)) + 1
            return ([{"namespace": "shop", "app": "web"}, {"namespace": "other", "app": "x"}],
                    np.vstack([np.arange(n, dtype=float), np.full(n, np.nan)]))

    rates = series.PrometheusRates(Prom(), 15, clock=lambda: 1_800_000_007.0)
    assert rates.current([APP]) == {APP: 1.0}
    assert calls[0][0] == "sum by (namespace, app) (rate(mpcloud_app_requests_total[60s]))"
    past = rates.history([APP], 500, 15)[APP]
    assert len(past) == 500 and calls[1][2] == 1_800_000_000.0 - 15  # ends before the current tick


def test_gateway_counts_rate_from_the_cumulative_invocations():
    fn = Series("CloudFunction", "mpcloud.io/v1alpha1", "shop", "f")
    table, now = {("shop", "f"): SimpleNamespace(invocations=10)}, [0.0]
    counts = series.GatewayCounts(lambda: table, clock=lambda: now[0])
    assert counts.current([fn]) == {}  # a first reading is a baseline
    table[("shop", "f")].invocations, now[0] = 40, 15.0
    assert counts.current([fn]) == {fn: 2.0}
