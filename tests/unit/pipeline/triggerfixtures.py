"""Shared fixtures of the trigger tests: a Pipeline with git and schedule triggers, GitHub and GitLab deliveries."""

from __future__ import annotations

import base64
import json
from typing import Any

from mpcloud_operator.pipeline.push import github_signature

SECRET = b"s3cret-webhook"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def pipeline(triggers: dict[str, Any] | None = None, params: tuple[str, ...] = ("revision", "repo-url")
             ) -> dict[str, Any]:
    return {
        "apiVersion": "mpcloud.io/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "shop", "namespace": "ci", "uid": "u-1", "resourceVersion": "1"},
        "spec": {
            "params": [{"name": p, "default": ""} for p in params],
            "tasks": [{"name": "test", "taskSpec": {"steps": [{"name": "t", "image": "busybox", "script": "true"}]}}],
            "triggers": triggers if triggers is not None else {
                "git": [{"name": "push", "secretRef": {"name": "hook"}, "branches": ["main", "release/*"]}]},
        },
    }


def secret(value: bytes = SECRET, name: str = "hook", key: str = "secret") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ci"},
            "data": {key: base64.b64encode(value).decode()}}


def github_push(ref: str = "refs/heads/main", after: str = SHA, delivery: str = "d-1",
                secret_value: bytes | None = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"ref": ref, "before": "0" * 40, "after": after, "deleted": after == "0" * 40,
                       "repository": {"full_name": "team/shop", "clone_url": "http://git.local/shop.git"},
                       "pusher": {"name": "dev"}}).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if secret_value is not None:
        headers["X-Hub-Signature-256"] = github_signature(secret_value, body)
    return headers, body


def gitlab_push(token: str | None = SECRET.decode(), ref: str = "refs/heads/main") -> tuple[dict[str, str], bytes]:
    body = json.dumps({"object_kind": "push", "ref": ref, "before": "0" * 40, "after": SHA, "user_username": "dev",
                       "project": {"path_with_namespace": "team/shop",
                                   "git_http_url": "http://gitlab.local/team/shop.git"}}).encode()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "g-1"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers, body
