"""The Git push webhook of the operator (leader only, its own port, like the function scaler's /demand).

    POST /hooks/git/<namespace>/<pipeline>/<trigger>     (the trigger may be left out when the pipeline has one)

A delivery is answered only after it was checked against the trigger's Secret (push.verify): without a valid
signature (GitHub) or token (GitLab) it is 401 with a JSON error and nothing is created. A valid push of a
matching branch creates the PipelineRun of push.run_body (201 {"run": name}); a repeated delivery finds that run
(200, "duplicate": true); a push to another branch, a tag or a branch deletion creates nothing (200, "skipped").

The operator reads no Secrets unless a namespace lets it: the trigger's Secret is read (a GET per delivery, no
list or watch) only where the namespace binds ClusterRole `mpcloud-operator-triggers`; otherwise the delivery
gets 503 TriggerSecretForbidden naming the RoleBinding to create, and the Pipeline a Warning Event.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from mpcloud_operator.config import TRIGGER_FIELD_MANAGER
from mpcloud_operator.health import send_json
from mpcloud_operator.kube.client import ApiException
from mpcloud_operator.pipeline import push
from mpcloud_operator.pipeline.model import PIPELINE_KIND, Pipeline
from mpcloud_operator.pipeline.push import WebhookError

log = logging.getLogger("mpcloud.pipeline.webhook")
PATH = re.compile(r"^/hooks/git/(?P<ns>[a-z0-9-]{1,63})/(?P<pipeline>[a-z0-9.-]{1,253})(/(?P<trigger>[a-z0-9-]{1,63}))?/?$")
DELIVERIES = Counter("mpcloud_pipeline_webhook_deliveries_total", "Git webhook deliveries, by outcome.", ["outcome"])
OPT_IN = ("kubectl -n {ns} create rolebinding mpcloud-operator-triggers --clusterrole=mpcloud-operator-triggers "
          "--serviceaccount=mpcloud-system:mpcloud-operator")


class Webhooks:
    """Turns deliveries into PipelineRuns; `handle` is the whole behaviour (the HTTP layer only moves bytes)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()  # one create at a time per process: two racing duplicates meet the 409

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            status, out = self._handle(path, headers, body)
        except WebhookError as exc:
            DELIVERIES.labels(exc.type).inc()
            return exc.status, exc.body()
        DELIVERIES.labels(out.get("outcome", "ok")).inc()
        return status, out

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        match = PATH.match(path.split("?", 1)[0])
        if match is None:
            raise WebhookError(404, "NotFound", "POST /hooks/git/<namespace>/<pipeline>[/<trigger>]")
        ns, name = match["ns"], match["pipeline"]
        pipeline = self._pipeline(ns, name)
        triggers = pipeline.spec.triggers.git if pipeline.spec.triggers else []
        if match["trigger"]:
            trigger = next((t for t in triggers if t.name == match["trigger"]), None)
        else:
            trigger = triggers[0] if len(triggers) == 1 else None
        if trigger is None:
            raise WebhookError(404, "TriggerNotFound", f"Pipeline {ns}/{name} has no git trigger "
                               f"{match['trigger'] or '(name one: it has ' + str(len(triggers)) + ')'}")
        push.verify(headers, body, self._secret(pipeline, trigger.secret_ref.name, trigger.secret_ref.key))
        event = push.parse(headers, body)
        if event.event == "ping":
            return 200, {"outcome": "ping", "message": "pong"}
        if event.deleted:
            return 200, {"outcome": "skipped", "skipped": f"{event.ref} was deleted"}
        if not push.branch_matches(trigger.branches, event.branch):
            return 200, {"outcome": "skipped",
                         "skipped": f"{event.ref} does not match the trigger's branches {trigger.branches or ['*']}"}
        declared = {p.name for p in pipeline.spec.params}
        run = push.run_body(ns, name, declared, trigger, event, pipeline.spec.triggers.run_spec)
        return self._create(pipeline, run, f"push of {event.revision[:12]} to {event.ref}")

    def _pipeline(self, ns: str, name: str) -> Pipeline:
        body = self.runtime.primaries.get((PIPELINE_KIND, ns, name)) or self.runtime.kube.get(PIPELINE_KIND, ns, name)
        if body is None:
            raise WebhookError(404, "PipelineNotFound", f"Pipeline {ns}/{name} not found")
        try:
            return Pipeline.from_body(body)
        except ValidationError as exc:
            raise WebhookError(409, "InvalidPipeline", f"Pipeline {ns}/{name} is invalid: {exc}"[:500]) from None

    def _secret(self, pipeline: Pipeline, name: str, key: str) -> bytes:
        ns = pipeline.metadata.namespace or ""
        try:
            secret = self.runtime.kube.get("Secret", ns, name)
        except ApiException as exc:
            if exc.status != 403:
                raise WebhookError(503, "TriggerSecretUnavailable", f"reading Secret {ns}/{name}: {exc.reason}") \
                    from None
            message = (f"the operator may not read Secret {ns}/{name}: let it with `{OPT_IN.format(ns=ns)}`")
            self._event(pipeline, "TriggerSecretForbidden", message, "Warning")
            raise WebhookError(503, "TriggerSecretForbidden", message) from None
        if secret is None or key not in (secret.get("data") or {}):
            message = f"Secret {ns}/{name} " + ("not found" if secret is None else f"has no key {key!r}")
            self._event(pipeline, "TriggerSecretNotFound", message, "Warning")
            raise WebhookError(503, "TriggerSecretNotFound", message)
        return base64.b64decode(secret["data"][key]).strip()

    def _create(self, pipeline: Pipeline, run: dict[str, Any], why: str) -> tuple[int, dict[str, Any]]:
        name = run["metadata"]["name"]
        with self._lock:
            try:
                created = self.runtime.kube.create(run, manager=TRIGGER_FIELD_MANAGER)
            except ApiException as exc:
                from mpcloud_operator.kube.client import error_message

                raise WebhookError(502 if exc.status >= 500 else 422, "CreateRunFailed",
                                   f"creating PipelineRun {name}: {error_message(exc)}"[:1000]) from None
        if created is None:
            return 200, {"outcome": "duplicate", "run": name, "duplicate": True}
        log.info("Pipeline %s/%s: %s started PipelineRun %s", pipeline.metadata.namespace, pipeline.metadata.name,
                 why, name)
        self._event(pipeline, "Triggered", f"{why} started PipelineRun {name}", "Normal")
        return 201, {"outcome": "created", "run": name}

    def _event(self, pipeline: Pipeline, reason: str, message: str, type_: str) -> None:
        involved = {"apiVersion": pipeline.api_version, "kind": pipeline.kind,
                    "metadata": pipeline.metadata.model_dump(exclude_none=True)}
        self.runtime.kube.post_event(involved, reason, message, type_)


def serve(webhooks: Webhooks, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP layer: POST only, bodies up to push.MAX_BODY, JSON answers."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            if length > push.MAX_BODY:
                self._reply(413, WebhookError(413, "PayloadTooLarge", f"at most {push.MAX_BODY} bytes").body())
                return
            body = self.rfile.read(length)
            try:
                status, out = webhooks.handle(self.path, dict(self.headers.items()), body)
            except Exception as exc:  # noqa: BLE001 - the sender retries; say why
                log.exception("webhook delivery failed")
                status, out = 500, WebhookError(500, "InternalError", str(exc)[:500]).body()
            out.pop("outcome", None)
            self._reply(status, out)

        def do_GET(self) -> None:  # noqa: N802
            self._reply(405, WebhookError(405, "MethodNotAllowed", "deliveries are POSTs").body())

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            send_json(self, code, body)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("webhook: " + fmt, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="pipeline-webhook", daemon=True).start()
    return server


def listen(webhooks: Webhooks, host: str, port: int, stop: threading.Event, patience: float = 60.0
           ) -> ThreadingHTTPServer | None:
    """Bind, retrying while a previous leader on this host still holds the port (as the /demand listener does)."""
    deadline = time.monotonic() + patience
    while not stop.is_set():
        try:
            server = serve(webhooks, host, port)
            log.info("git webhooks on :%d/hooks/git/<namespace>/<pipeline>[/<trigger>]", port)
            return server
        except OSError as exc:
            if time.monotonic() > deadline:
                log.error("the git webhook endpoint could not listen on :%d (%s): pushes start no runs", port, exc)
                return None
            stop.wait(0.5)
    return None
