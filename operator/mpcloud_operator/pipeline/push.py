"""Git push webhooks as pure functions: check the signature, read the payload, pick the branch, build the run.

GitHub signs the raw body with the shared secret (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`) and names the
event (`X-GitHub-Event: push`) and the delivery (`X-GitHub-Delivery`, a GUID that a redelivery repeats). GitLab
sends the secret itself (`X-Gitlab-Token`), `X-Gitlab-Event: Push Hook` and `X-Gitlab-Event-UUID`. Both are
compared in constant time. The run a push starts is named from the pipeline, the trigger and the delivery, so a
duplicate delivery finds the run the first one created (the API server's AlreadyExists), however many operators
restarted in between.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpcloud_operator.pipeline.model import API_VERSION, RUN_KIND
from mpcloud_operator.pipeline.triggers import EVENT_PARAMS, GitTrigger, TriggerParam

PIPELINE_LABEL = "mpcloud.io/pipeline"
TRIGGER_LABEL = "mpcloud.io/trigger"
TRIGGER_TYPE_LABEL = "mpcloud.io/trigger-type"
COMMIT_LABEL = "mpcloud.io/commit"
DELIVERY_ANNOTATION = "mpcloud.io/delivery"
REF_ANNOTATION = "mpcloud.io/ref"
ZERO_SHA = "0" * 40
MAX_BODY = 1 << 20  # GitHub caps payloads at 25 MiB; a push of a few commits is a few KiB


class WebhookError(Exception):
    """A delivery that is refused: HTTP `status`, a CamelCase `type`, and a message for the sender's log."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message}}


@dataclass(frozen=True)
class PushEvent:
    provider: str  # github | gitlab
    event: str  # push, or ping (GitHub's check when a hook is created)
    delivery: str  # the sender's delivery id; "" when it sent none
    ref: str = ""
    before: str = ""
    revision: str = ""  # the commit pushed (after)
    repo_url: str = ""
    repo_name: str = ""
    pusher: str = ""

    @property
    def branch(self) -> str | None:
        """The branch of `refs/heads/<branch>`; None for tags and other refs."""
        return self.ref[len("refs/heads/"):] if self.ref.startswith("refs/heads/") else None

    @property
    def deleted(self) -> bool:
        return self.revision in ("", ZERO_SHA)

    @property
    def identity(self) -> str:
        """What makes two deliveries the same push: the delivery id, else the ref update itself."""
        return self.delivery or f"{self.ref}:{self.before}:{self.revision}"

    def values(self) -> dict[str, str]:
        """The values a run may take as params (triggers.EVENT_PARAMS)."""
        return {"revision": self.revision, "ref": self.ref, "branch": self.branch or "", "repo-url": self.repo_url,
                "repo-name": self.repo_name}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def provider_of(headers: Mapping[str, str]) -> str:
    if _header(headers, "X-GitHub-Event") is not None:
        return "github"
    if _header(headers, "X-Gitlab-Event") is not None:
        return "gitlab"
    raise WebhookError(400, "UnknownSender", "neither X-GitHub-Event nor X-Gitlab-Event is set")


def github_signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: bytes) -> None:
    """Raise WebhookError(401) unless the delivery carries the shared secret (GitHub: its HMAC; GitLab: itself)."""
    provider = provider_of(headers)
    if not secret:
        raise WebhookError(401, "InvalidSignature", "the trigger's secret is empty: every delivery is refused")
    if provider == "github":
        given = _header(headers, "X-Hub-Signature-256")
        if not given:
            raise WebhookError(401, "MissingSignature", "X-Hub-Signature-256 is missing")
        if not hmac.compare_digest(given.strip().encode(), github_signature(secret, body).encode()):
            raise WebhookError(401, "InvalidSignature", "X-Hub-Signature-256 does not match the body")
    else:
        given = _header(headers, "X-Gitlab-Token")
        if not given:
            raise WebhookError(401, "MissingSignature", "X-Gitlab-Token is missing")
        if not hmac.compare_digest(given.encode(), secret):
            raise WebhookError(401, "InvalidSignature", "X-Gitlab-Token does not match")


def parse(headers: Mapping[str, str], body: bytes) -> PushEvent:
    """The push in a (verified) delivery; WebhookError(400) for what is not a push payload."""
    provider = provider_of(headers)
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookError(400, "BadPayload", f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "BadPayload", "the body is not a JSON object")
    if provider == "github":
        event = (_header(headers, "X-GitHub-Event") or "").strip()
        delivery = _header(headers, "X-GitHub-Delivery") or ""
        if event == "ping":
            return PushEvent("github", "ping", delivery)
        repo = payload.get("repository") or {}
        url, name, pusher = repo.get("clone_url"), repo.get("full_name"), (payload.get("pusher") or {}).get("name")
    else:
        event = "push" if (_header(headers, "X-Gitlab-Event") or "").strip() == "Push Hook" else "other"
        delivery = _header(headers, "X-Gitlab-Event-UUID") or _header(headers, "Idempotency-Key") or ""
        project = payload.get("project") or {}
        url = project.get("git_http_url") or (payload.get("repository") or {}).get("git_http_url")
        name, pusher = project.get("path_with_namespace"), payload.get("user_username")
    if event != "push":
        raise WebhookError(400, "UnsupportedEvent", f"only push events start runs (got {event or 'none'})")
    ref, before, after = payload.get("ref"), payload.get("before"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise WebhookError(400, "BadPayload", "a push payload needs string fields ref and after")
    return PushEvent(provider, "push", delivery[:256], ref[:1024], str(before or "")[:64], after[:64],
                     str(url or "")[:1024], str(name or "")[:256], str(pusher or "")[:256])


def branch_matches(globs: list[str], branch: str | None) -> bool:
    """Whether a push to `branch` starts a run: a branch (not a tag) matching a glob, or any branch if none."""
    if branch is None:
        return False
    return not globs or any(fnmatch.fnmatchcase(branch, g) for g in globs)


def run_params(declared: set[str], values: Mapping[str, str], fixed: list[TriggerParam]) -> list[dict[str, str]]:
    """The run's params: of the event's values those the pipeline declares (in `values` order), then the
    trigger's fixed ones (which win)."""
    chosen = {k: v for k, v in values.items() if k in declared}
    chosen.update({p.name: p.value for p in fixed})
    return [{"name": k, "value": v} for k, v in chosen.items()]


def short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def run_name(pipeline: str, key: str, max_prefix: int = 40) -> str:
    """`<pipeline>-<10 hex of key>`: deterministic, so the same key always names the same run."""
    prefix = pipeline[:max_prefix].rstrip("-.")
    return f"{prefix}-{short_hash(key)}"


def label_safe(value: str) -> str | None:
    """`value` if it is a valid label value, else None (names longer than 63 go only in annotations)."""
    import re

    return value if re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", value) else None


def trigger_labels(pipeline: str, trigger: str, trigger_type: str) -> dict[str, str]:
    labels = {TRIGGER_LABEL: trigger, TRIGGER_TYPE_LABEL: trigger_type}
    if label_safe(pipeline):
        labels[PIPELINE_LABEL] = pipeline
    return labels


def run_body(namespace: str, pipeline: str, declared: set[str], trigger: GitTrigger, event: PushEvent,
             run_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PipelineRun a push starts (pure)."""
    labels = trigger_labels(pipeline, trigger.name, "git")
    if label_safe(event.revision):
        labels[COMMIT_LABEL] = event.revision
    annotations = {DELIVERY_ANNOTATION: f"{event.provider}/{event.identity}", REF_ANNOTATION: event.ref}
    return {
        "apiVersion": API_VERSION, "kind": RUN_KIND,
        "metadata": {"name": run_name(pipeline, f"git/{trigger.name}/{event.identity}"), "namespace": namespace,
                     "labels": labels, "annotations": annotations},
        "spec": {**(run_spec or {}), "pipelineRef": {"name": pipeline},
                 "params": run_params(declared, event.values(), trigger.params)},
    }
