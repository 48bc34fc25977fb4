"""What starts a Pipeline's runs besides `kubectl create` and `mpcloud pipeline run`: Git pushes and schedules.

`Pipeline.spec.triggers` (Tekton Triggers' EventListener + TriggerBinding, folded into the Pipeline and kept small):

    triggers:
      git:                                  # POST /hooks/git/<namespace>/<pipeline>/<trigger> on the webhook port
        - name: push
          secretRef: {name: shop-webhook}   # key `secret`: GitHub's HMAC secret, or GitLab's token
          branches: [main, "release/*"]     # globs on the branch; empty: every branch (tags never)
      schedules:
        - name: nightly
          cron: "0 2 * * *"                 # UTC; a sixth field is seconds (croniter's), for tests
          concurrencyPolicy: Forbid         # Allow | Forbid | Replace, as a CronJob's

A run started by a trigger gets, of the values below, those the pipeline declares as params (a run may give no
undeclared param): `revision` (the pushed commit), `ref` (refs/heads/main), `branch`, `repo-url` (the clone URL),
`repo-name`; schedules give `schedule-time` (RFC 3339). A trigger's own `params` are added as given.

Triggers of a pipeline embedded in a PipelineRun (`spec.pipelineSpec`) are ignored: only a Pipeline has them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from mpcloud_operator.api.schema import APIModel, list_map
from mpcloud_operator.api.types import Label, Name

EVENT_PARAMS = ("revision", "ref", "branch", "repo-url", "repo-name")
SCHEDULE_PARAMS = ("schedule-time",)
Glob = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-_./*?a-zA-Z0-9\[\]!]+$")]


class TriggerParam(APIModel):
    """A fixed param value for runs a trigger starts."""

    name: Label
    """Param name (declared by the pipeline)."""
    value: Annotated[str, StringConstraints(max_length=4096)]
    """Value."""


class SecretKeyRef(APIModel):
    """A key of a Secret in the pipeline's namespace. The operator may read it only where the namespace binds
    ClusterRole mpcloud-operator-triggers (or a Role naming just this Secret) to its ServiceAccount."""

    name: Name
    """Secret name."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "secret"
    """Key holding the webhook secret (GitHub) or token (GitLab)."""


class GitTrigger(APIModel):
    """A push webhook (GitHub or GitLab payloads) that starts a run of the pushed commit."""

    name: Label
    """Trigger name: the last segment of its URL, and the run's mpcloud.io/trigger label."""
    secret_ref: SecretKeyRef
    """The shared secret: GitHub signs the body with it (X-Hub-Signature-256), GitLab sends it (X-Gitlab-Token)."""
    branches: list[Glob] = Field(default_factory=list, max_length=16)
    """Branches (fnmatch globs, e.g. release/*) whose pushes start a run; empty: every branch."""
    params: list[TriggerParam] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("name"))
    """Fixed params of its runs, besides the push's (revision, ref, branch, repo-url, repo-name)."""


class ScheduleTrigger(APIModel):
    """A cron schedule: one run per scheduled time, named after it (a restart never starts one twice)."""

    name: Label
    """Schedule name (in the run's name and mpcloud.io/trigger label)."""
    cron: str = Field(min_length=9, max_length=128)
    """Cron expression in UTC ("0 2 * * *"); an optional sixth field is seconds."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    """While its previous run still runs: start another (Allow), skip this time (Forbid), or cancel the previous
    one and start (Replace)."""
    starting_deadline_seconds: int = Field(default=60, ge=1, le=86400)
    """A scheduled time missed by more than this (operator down) is not run late."""
    suspend: bool = False
    """Start no runs."""
    params: list[TriggerParam] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("name"))
    """Fixed params of its runs (schedule-time is given if the pipeline declares it)."""

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value) or len(value.split()) not in (5, 6):
            raise ValueError(f"cron {value!r} is not a five-field (or six-field, seconds last) cron expression")
        return value


class PipelineTriggers(APIModel):
    """What starts runs of this pipeline."""

    git: list[GitTrigger] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """Push webhooks."""
    schedules: list[ScheduleTrigger] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """Cron schedules."""
    run_spec: Any = Field(default=None, json_schema_extra={
        "type": "object", "x-kubernetes-preserve-unknown-fields": True})
    """The rest of the spec of every run a trigger starts (a PipelineRun's workspaces, timeouts, sandbox; not
    pipelineRef or params): e.g. a volumeClaimTemplate for the pipeline's workspace."""

    @field_validator("run_spec")
    @classmethod
    def _valid_run_spec(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("triggers.runSpec must be an object")
        if {"pipelineRef", "pipelineSpec", "params", "status"} & set(value):
            raise ValueError("triggers.runSpec may not set pipelineRef, pipelineSpec, params or status")
        from mpcloud_operator.pipeline.model import PipelineRunSpec  # here: model.py imports this module

        PipelineRunSpec.model_validate({"pipelineRef": {"name": "check"}, **value})
        return value
