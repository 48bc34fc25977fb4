"""Cron schedules: due times, deterministic run names (no duplicate across restarts), concurrency policies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from mpcloud_operator.kinds import KINDS
from mpcloud_operator.pipeline import cron
from mpcloud_operator.pipeline.model import Pipeline
from mpcloud_operator.pipeline.triggers import ScheduleTrigger
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient
from tests.unit.pipeline.triggerfixtures import pipeline

T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)


def test_latest_due():
    assert cron.latest_due("*/5 * * * *", T0, None, 60) == T0  # exactly on time counts
    assert cron.latest_due("*/5 * * * *", T0 + timedelta(seconds=30), None, 60) == T0
    assert cron.latest_due("*/5 * * * *", T0 + timedelta(seconds=90), None, 60) is None  # missed: not run late
    assert cron.latest_due("*/5 * * * *", T0 + timedelta(seconds=30), T0, 60) is None  # handled already
    assert cron.latest_due("*/5 * * * *", T0 + timedelta(minutes=5), T0, 60) == T0 + timedelta(minutes=5)
    # An outage of an hour: only the latest time, and only within the deadline.
    assert cron.latest_due("* * * * *", T0 + timedelta(hours=1, seconds=10), T0, 60) == T0 + timedelta(hours=1)
    assert cron.latest_due("* * * * * */5", T0 + timedelta(seconds=7), None, 60) == T0 + timedelta(seconds=5)


def test_run_names_are_deterministic_and_bounded():
    a = cron.schedule_run_name("shop", "nightly", T0)
    assert a == f"shop-nightly-{int(T0.timestamp() // 60)}"  # as a CronJob names its Jobs
    assert cron.schedule_run_name("shop", "nightly", T0 + timedelta(seconds=20)) == a
    assert cron.schedule_run_name("shop", "nightly", T0 + timedelta(seconds=20), seconds=True) != a
    long1 = cron.schedule_run_name("a" * 60 + "x", "s", T0)
    long2 = cron.schedule_run_name("a" * 60 + "y", "s", T0)
    assert len(long1) <= 52 and len(long2) <= 52 and long1 != long2


def test_bad_cron_is_refused_by_the_model():
    with pytest.raises(ValidationError, match="cron"):
        ScheduleTrigger(name="x", cron="every day at 2")
    ScheduleTrigger(name="x", cron="0 2 * * *")


def schedule_pipeline(policy="Allow", cron_expr="* * * * *"):
    return pipeline({"schedules": [{"name": "nightly", "cron": cron_expr, "concurrencyPolicy": policy}]},
                    params=("schedule-time",))


def scheduler(body, *objects):
    kube = FakeClient([body, *objects])
    rt = Runtime.for_kinds(kube, KINDS)
    rt.primaries.put(("Pipeline", "ci", "shop"), kube.objects[("Pipeline", "ci", "shop")])
    return cron.Scheduler(rt), kube


def runs(kube):
    return sorted(n for (k, _, n) in kube.objects if k == "PipelineRun")


def test_one_run_per_time_and_none_again_after_a_restart():
    s, kube = scheduler(schedule_pipeline())
    s.tick(T0 + timedelta(seconds=1))
    s.tick(T0 + timedelta(seconds=2))
    assert runs(kube) == [cron.schedule_run_name("shop", "nightly", T0)]
    [run] = [o for (k, _, _), o in kube.objects.items() if k == "PipelineRun"]
    assert run["spec"]["params"] == [{"name": "schedule-time", "value": "2026-12-03T12:00:00Z"}]
    assert run["metadata"]["labels"]["mpcloud.io/trigger"] == "nightly"
    restarted = cron.Scheduler(s.runtime)  # a new process: nothing in memory
    restarted.tick(T0 + timedelta(seconds=3))
    assert len(runs(kube)) == 1 and restarted.started == 0
    s.tick(T0 + timedelta(minutes=1, seconds=1))
    assert len(runs(kube)) == 2


def test_suspended_schedules_start_nothing():
    body = schedule_pipeline()
    body["spec"]["triggers"]["schedules"][0]["suspend"] = True
    s, kube = scheduler(body)
    s.tick(T0)
    assert runs(kube) == []


def running(name):
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": name, "namespace": "ci",
                         "labels": {"mpcloud.io/trigger": "nightly", "mpcloud.io/trigger-type": "schedule"}},
            "spec": {"pipelineRef": {"name": "shop"}},
            "status": {"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}]}}


def test_forbid_skips_while_the_previous_run_runs():
    s, kube = scheduler(schedule_pipeline("Forbid"), running("shop-nightly-old"))
    s.tick(T0)
    assert runs(kube) == ["shop-nightly-old"]
    assert ("ScheduleSkipped", "Normal") in kube.events()
    kube.objects[("PipelineRun", "ci", "shop-nightly-old")]["status"]["conditions"][0]["status"] = "True"
    s.tick(T0 + timedelta(minutes=1))
    assert len(runs(kube)) == 2


def test_replace_cancels_the_previous_run():
    s, kube = scheduler(schedule_pipeline("Replace"), running("shop-nightly-old"))
    s.tick(T0)
    assert kube.objects[("PipelineRun", "ci", "shop-nightly-old")]["spec"]["status"] == "Cancelled"
    assert len(runs(kube)) == 2


def test_run_body_of_a_schedule():
    pl = Pipeline.from_body(schedule_pipeline())
    body = cron.run_body(pl, pl.spec.triggers.schedules[0], T0)
    assert body["metadata"]["annotations"] == {"mpcloud.io/scheduled-time": "2026-12-03T12:00:00Z"}
    assert body["spec"]["pipelineRef"] == {"name": "shop"}
