"""Cron schedules of Pipelines: one PipelineRun per scheduled time, leader only, never two for the same time.

As a Kubernetes CronJob names its Jobs `<cronjob>-<scheduled minutes since the epoch>`, a scheduled run is named
from the pipeline, the schedule and the scheduled time (`schedule_run_name`): a restarted operator that looks at
the same time again gets AlreadyExists from the API server instead of a second run. A time missed by more than
`startingDeadlineSeconds` (the operator was down) is not run late; only the latest due time is considered, so an
outage never piles up runs. `concurrencyPolicy` is a CronJob's: Forbid skips a time while the schedule's previous
run still runs, Replace cancels that run (`spec.status: Cancelled`) and starts the new one.

Pure: `latest_due`, `schedule_run_name`, `run_body`. `Scheduler.tick(now)` reads Pipelines from the operator's
watch cache (no API call unless a run is due).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from croniter import croniter
from mpcloud_operator.api.conditions import get_condition
from mpcloud_operator.config import TRIGGER_FIELD_MANAGER
from mpcloud_operator.pipeline import push
from mpcloud_operator.pipeline.model import API_VERSION, PIPELINE_KIND, RUN_KIND, Pipeline
from mpcloud_operator.pipeline.triggers import ScheduleTrigger
from mpcloud_operator.runtime import ParsedPrimaries

log = logging.getLogger("mpcloud.pipeline.cron")
SCHEDULED_ANNOTATION = "mpcloud.io/scheduled-time"
MAX_NAME = 52  # a CronJob's limit too: the run's name is the prefix of its Jobs' names


def has_seconds(cron: str) -> bool:
    return len(cron.split()) == 6


def latest_due(cron: str, now: datetime, handled: datetime | None, deadline_seconds: float) -> datetime | None:
    """The latest scheduled time at or before `now` that is still to run: after `handled` (the last time this
    process acted on) and no more than `deadline_seconds` ago. None: nothing to do now."""
    due = croniter(cron, now + timedelta(milliseconds=1)).get_prev(datetime)
    if handled is not None and due <= handled:
        return None
    if (now - due).total_seconds() > deadline_seconds:
        return None
    return due


def schedule_run_name(pipeline: str, schedule: str, at: datetime, seconds: bool = False) -> str:
    """`<pipeline>-<schedule>-<minutes since the epoch>` (seconds for a six-field cron), at most 52 characters:
    a long prefix is cut and given a hash, so two pipelines sharing a long prefix never share run names."""
    stamp = str(int(at.timestamp()) if seconds else int(at.timestamp() // 60))
    prefix = f"{pipeline}-{schedule}"
    room = MAX_NAME - len(stamp) - 1
    if len(prefix) > room:
        prefix = f"{prefix[:room - 7].rstrip('-.')}-{push.short_hash(prefix, 6)}"
    return f"{prefix}-{stamp}"


def run_body(pipeline: Pipeline, schedule: ScheduleTrigger, at: datetime) -> dict[str, Any]:
    """The PipelineRun a schedule starts for time `at` (pure)."""
    name, ns = pipeline.metadata.name, pipeline.metadata.namespace
    stamp = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    declared = {p.name for p in pipeline.spec.params}
    return {
        "apiVersion": API_VERSION, "kind": RUN_KIND,
        "metadata": {"name": schedule_run_name(name, schedule.name, at, has_seconds(schedule.cron)),
                     "namespace": ns, "labels": push.trigger_labels(name, schedule.name, "schedule"),
                     "annotations": {SCHEDULED_ANNOTATION: stamp}},
        "spec": {**((pipeline.spec.triggers.run_spec if pipeline.spec.triggers else None) or {}),
                 "pipelineRef": {"name": name},
                 "params": push.run_params(declared, {"schedule-time": stamp}, schedule.params)},
    }


def finished(run: dict[str, Any]) -> bool:
    cond = get_condition((run.get("status") or {}).get("conditions"), "Succeeded") or {}
    return cond.get("status") in ("True", "False")


class Scheduler:
    """The schedules of every Pipeline the operator watches; `tick(now)` starts what is due."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.handled: dict[tuple[str, str, str, str], datetime] = {}
        self.pipelines = ParsedPrimaries(runtime.primaries, PIPELINE_KIND, Pipeline)
        self.started = 0

    def tick(self, now: datetime) -> None:
        live = set()
        for _, ns, name in self.runtime.primaries.keys(PIPELINE_KIND):
            pipeline = self.pipelines.get((ns, name))
            if pipeline is None or pipeline.spec.triggers is None:
                continue
            for schedule in pipeline.spec.triggers.schedules:
                key = (ns, name, schedule.name, schedule.cron)
                live.add(key)
                if schedule.suspend or not croniter.is_valid(schedule.cron):
                    continue
                due = latest_due(schedule.cron, now, self.handled.get(key), schedule.starting_deadline_seconds)
                if due is None:
                    continue
                try:
                    self._start(pipeline, schedule, due)
                    self.handled[key] = due
                except Exception as exc:  # noqa: BLE001 - retried next tick while within the deadline
                    log.warning("Pipeline %s/%s: schedule %s at %s: %s", ns, name, schedule.name, due, exc)
        for key in set(self.handled) - live:
            del self.handled[key]

    def _active(self, pipeline: Pipeline, schedule: ScheduleTrigger) -> list[dict[str, Any]]:
        ns, name = pipeline.metadata.namespace, pipeline.metadata.name
        query = [("labelSelector", f"{push.TRIGGER_LABEL}={schedule.name}")]
        items = self.runtime.kube.list(RUN_KIND, ns, query=query).get("items") or []
        return [r for r in items if (r.get("spec") or {}).get("pipelineRef", {}).get("name") == name
                and (r["metadata"].get("labels") or {}).get(push.TRIGGER_TYPE_LABEL) == "schedule"
                and not finished(r) and not (r.get("spec") or {}).get("status")]

    def _start(self, pipeline: Pipeline, schedule: ScheduleTrigger, due: datetime) -> None:
        run = run_body(pipeline, schedule, due)
        involved = {"apiVersion": pipeline.api_version, "kind": pipeline.kind,
                    "metadata": pipeline.metadata.model_dump(exclude_none=True)}
        if schedule.concurrency_policy != "Allow":
            active = [r for r in self._active(pipeline, schedule) if r["metadata"]["name"] != run["metadata"]["name"]]
            if active and schedule.concurrency_policy == "Forbid":
                self.runtime.kube.post_event(involved, "ScheduleSkipped", f"schedule {schedule.name}: {due:%H:%M:%S} "
                                             f"skipped, {active[0]['metadata']['name']} still runs", "Normal")
                return
            for r in active:  # Replace
                self.runtime.kube.apply({"apiVersion": API_VERSION, "kind": RUN_KIND, "metadata": {
                    "name": r["metadata"]["name"], "namespace": r["metadata"]["namespace"]},
                    "spec": {"status": "Cancelled"}}, manager=TRIGGER_FIELD_MANAGER)
        if self.runtime.kube.create(run, manager=TRIGGER_FIELD_MANAGER) is None:
            return  # started before (this process before a restart, or another leader)
        self.started += 1
        log.info("Pipeline %s/%s: schedule %s started PipelineRun %s", pipeline.metadata.namespace,
                 pipeline.metadata.name, schedule.name, run["metadata"]["name"])
        self.runtime.kube.post_event(involved, "Scheduled", f"schedule {schedule.name} started PipelineRun "
                                     f"{run['metadata']['name']}", "Normal")
