"""A PipelineRun's children as pure functions: one Job per task attempt, a PVC per claim-template workspace.

Job `<run>-<task>-<attempt>` (truncated with a hash past 63 characters: the Job controller labels its pods with
the Job's name) is owned by the run, `backoffLimit: 0` (retries are the run's, each a new Job), and its pod:

- runs the steps in order as init containers `step-<name>` (a failed step fails the pod; the steps after it do
  not run); the main container is the last step, or, when the task declares results, a small `results` reporter
  that packs the files the steps wrote to $(results.<name>.path) into its termination message (JSON, at most
  4096 bytes, as Tekton does) — init containers are the only way Kubernetes runs containers one after another;
- runs scripts as executable files: each step's (substituted) script is a pod annotation projected into a
  downwardAPI volume with mode 0555, so the script's `#!` line picks its interpreter and no shell or helper
  image is needed to place it;
- meets Pod Security "restricted" through `reconcile.workload` (non-root, no capabilities, read-only root, /tmp),
  uses the sandbox RuntimeClass unless the run opts out, in which case it is confined to the unsandboxed pool;
- mounts the run's workspaces (a PVC is shared by all tasks; an emptyDir only within one task's pod).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mpcloud_operator.api.parts import RunAs
from mpcloud_operator.pipeline.model import (
    API_VERSION,
    MAX_RESULT_BYTES,
    RUN_KIND,
    PipelineRun,
    PipelineTask,
    WorkspaceBinding,
    seconds,
)
from mpcloud_operator.pipeline.validate import RESULTS_DIR, substitute
from mpcloud_operator.reconcile import workload

MANAGER = "mpcloud"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
RUN_LABEL = "mpcloud.io/pipelinerun"
TASK_LABEL = "mpcloud.io/pipeline-task"
ATTEMPT_LABEL = "mpcloud.io/attempt"
SCRIPT_ANNOTATION = "mpcloud.io/script-"
SCRIPTS_DIR = "/mpcloud/scripts"
REPORTER = "results"
RUN_AS = RunAs()
# The reporter: reads the declared results, refuses more than MAX_RESULT_BYTES, writes them as JSON where the
# kubelet takes the termination message from. Exit 1 with a clear message when they do not fit.
REPORTER_CODE = """\
import json, os, sys
out = {}
for name in sys.argv[1:]:
    path = os.path.join(%r, name)
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            value = f.read()
        out[name] = value[:-1] if value.endswith("\\n") else value
text = json.dumps(out, separators=(",", ":"))
if len(text.encode()) > %d:
    text = "results are %%d bytes; at most %d are allowed" %% len(text.encode())
    print(text, file=sys.stderr)
    open("/dev/termination-log", "w").write(text)
    sys.exit(1)
open("/dev/termination-log", "w").write(text)
""" % (RESULTS_DIR, MAX_RESULT_BYTES, MAX_RESULT_BYTES)


def bounded(name: str, limit: int = 63) -> str:
    """`name`, or past `limit` characters a prefix and a hash of the whole (distinct names stay distinct)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:limit - 11].rstrip('-')}-{digest}"


def job_name(run: str, task: str, attempt: int) -> str:
    """Deterministic: the same run, task and attempt always name the same Job, so a restarted operator finds it
    instead of creating another. At most 63 characters (the Job controller labels its pods with the name)."""
    return bounded(f"{run}-{task}-{attempt}")


def claim_name(run: str, workspace: str) -> str:
    return bounded(f"{run}-ws-{workspace}", 253)


def owner_reference(run: PipelineRun) -> dict[str, Any]:
    if not run.metadata.uid:
        raise ValueError("the run has no metadata.uid: owner references need the stored object")
    return {"apiVersion": API_VERSION, "kind": RUN_KIND, "name": run.metadata.name, "uid": run.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def labels(run: PipelineRun) -> dict[str, str]:
    return {RUN_LABEL: run.metadata.name, MANAGED_BY_LABEL: MANAGER}


@dataclass(frozen=True)
class TaskInputs:
    """What one attempt's Job is built from, beyond the spec (resolved by the DAG and the operator)."""

    task: PipelineTask
    attempt: int
    params: dict[str, str]  # the task's params, resolved
    pipeline_params: dict[str, str]  # the run's params (propagated into embedded steps)
    context: dict[str, str]
    helper_image: str  # the results reporter's image (python3)
    unsandboxed_node_pool: str | None = None


def _mount_path(task: PipelineTask, name: str) -> str:
    w = next(w for w in task.task_spec.workspaces if w.name == name)
    return w.mount_path or f"/workspace/{name}"


def step_values(inputs: TaskInputs) -> dict[str, str]:
    """Task-level substitutions: params (the task's, else the pipeline's), result paths, workspace paths."""
    ts = inputs.task.task_spec
    values = {f"params.{k}": v for k, v in inputs.pipeline_params.items()}
    values.update({f"params.{k}": v for k, v in inputs.params.items()})
    values.update({f"results.{r.name}.path": f"{RESULTS_DIR}/{r.name}" for r in ts.results})
    values.update({f"workspaces.{w.name}.path": _mount_path(inputs.task, w.name) for w in ts.workspaces})
    values.update(inputs.context)
    values.update({"context.task.name": inputs.task.name, "context.task.retry-count": str(inputs.attempt - 1)})
    return values


def _volumes(run: PipelineRun, inputs: TaskInputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, step volume mounts) for scripts, results and workspaces."""
    task = inputs.task
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    scripts = [s for s in task.task_spec.steps if s.script is not None]
    if scripts:
        volumes.append({"name": "scripts", "downwardAPI": {"defaultMode": 0o555, "items": [
            {"path": s.name, "fieldRef": {"fieldPath": f"metadata.annotations['{SCRIPT_ANNOTATION}{s.name}']"}}
            for s in scripts]}})
        mounts.append({"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True})
    if task.task_spec.results:
        volumes.append({"name": "results", "emptyDir": {"sizeLimit": "1Mi"}})
        mounts.append({"name": "results", "mountPath": RESULTS_DIR})
    bindings = {b.name: b for b in run.spec.workspaces}
    uses = {u.name: u.workspace for u in task.workspaces}
    for w in task.task_spec.workspaces:
        binding: WorkspaceBinding | None = bindings.get(uses.get(w.name, w.name))
        if binding is None:
            continue  # an optional workspace the run left unbound
        volume = f"ws-{w.name}"
        read_only = w.read_only
        if binding.persistent_volume_claim is not None:
            volumes.append({"name": volume, "persistentVolumeClaim": {
                "claimName": binding.persistent_volume_claim.claim_name}})
            read_only = read_only or binding.persistent_volume_claim.read_only
        elif binding.volume_claim_template is not None:
            volumes.append({"name": volume, "persistentVolumeClaim": {
                "claimName": claim_name(run.metadata.name, binding.name)}})
        else:
            assert binding.empty_dir is not None
            volumes.append({"name": volume, "emptyDir": {"sizeLimit": binding.empty_dir.size_limit}})
        mounts.append({"name": volume, "mountPath": _mount_path(task, w.name), **({"readOnly": True} if read_only else {})})
    return volumes, mounts


def script_text(script: str) -> str:
    """A script without a #! line runs under /bin/sh -e (Tekton's default shell)."""
    return script if script.startswith("#!") else "#!/bin/sh\nset -e\n" + script


def _step_container(step: Any, values: dict[str, str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    command = [f"{SCRIPTS_DIR}/{step.name}"] if step.script is not None else [substitute(c, values) for c in step.command]
    container: dict[str, Any] = {
        "name": f"step-{step.name}", "image": step.image, "imagePullPolicy": step.image_pull_policy,
        "command": command, "args": [substitute(a, values) for a in step.args],
        "env": [{"name": "HOME", "value": "/tmp"}, *(
            {**e, "value": substitute(e["value"], values)} if "value" in e else e for e in workload.env(step.env))],
        "resources": workload.container_resources(step.resources),
        "securityContext": workload.restricted_container_security_context(),
        "volumeMounts": [workload.tmp_volume_mount(), *mounts],
        # A failing step's message is the end of its log unless it wrote one: what status shows.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if step.working_dir:
        container["workingDir"] = substitute(step.working_dir, values)
    if not container["args"]:
        del container["args"]
    return container


def job(run: PipelineRun, inputs: TaskInputs) -> dict[str, Any]:
    """The Job of one attempt of one task."""
    task = inputs.task
    values = step_values(inputs)
    volumes, mounts = _volumes(run, inputs)
    steps = [_step_container(s, values, mounts) for s in task.task_spec.steps]
    results = [r.name for r in task.task_spec.results]
    if results:
        init, main = steps, [{
            "name": REPORTER, "image": inputs.helper_image, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", REPORTER_CODE, *results],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
            "securityContext": workload.restricted_container_security_context(),
            "volumeMounts": [workload.tmp_volume_mount(), {"name": "results", "mountPath": RESULTS_DIR,
                                                           "readOnly": True}],
        }]
    else:
        init, main = steps[:-1], steps[-1:]
    pod = workload.restricted_pod_spec("default", main, run.spec.sandbox, RUN_AS)
    pod["restartPolicy"] = "Never"
    pod["terminationGracePeriodSeconds"] = 10
    pod["volumes"] += volumes
    if init:
        pod["initContainers"] = init
    if run.spec.sandbox.unsandboxed and inputs.unsandboxed_node_pool:
        key, _, value = inputs.unsandboxed_node_pool.partition("=")
        pod["nodeSelector"] = {key: value}
        pod["tolerations"] = [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}]
    job_labels = {**labels(run), TASK_LABEL: task.name, ATTEMPT_LABEL: str(inputs.attempt)}
    annotations = {f"{SCRIPT_ANNOTATION}{s.name}": script_text(substitute(s.script, values))
                   for s in task.task_spec.steps if s.script is not None}
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {
        "metadata": {"labels": job_labels, **({"annotations": annotations} if annotations else {})}, "spec": pod}}
    timeout = seconds(task.timeout)
    if timeout:
        spec["activeDeadlineSeconds"] = max(1, int(timeout))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(run.metadata.name, task.name, inputs.attempt),
                         "namespace": run.metadata.namespace, "labels": job_labels,
                         "ownerReferences": [owner_reference(run)]},
            "spec": spec}


def claim(run: PipelineRun, binding: WorkspaceBinding) -> dict[str, Any]:
    """The PVC of a volumeClaimTemplate workspace (the run owns it: deleted with the run)."""
    tpl = binding.volume_claim_template
    assert tpl is not None
    spec: dict[str, Any] = {"accessModes": list(tpl.access_modes), "resources": {"requests": {"storage": tpl.storage}}}
    if tpl.storage_class_name:
        spec["storageClassName"] = tpl.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(run.metadata.name, binding.name), "namespace": run.metadata.namespace,
                         "labels": labels(run), "ownerReferences": [owner_reference(run)]},
            "spec": spec}


# ------------------------------------------------------------------ observing


def job_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a task Job the run's state is computed from (all the watch cache keeps of it)."""
    meta, st = obj["metadata"], obj.get("status") or {}
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or () if r.get("controller")), None)
    finished = next(({"type": c["type"], "reason": c.get("reason", ""), "message": c.get("message", "")}
                     for c in st.get("conditions") or ()
                     if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"), None)
    return {"owner": owner, "created": meta.get("creationTimestamp"), "deleting": bool(meta.get("deletionTimestamp")),
            "startTime": st.get("startTime"), "completionTime": st.get("completionTime"), "finished": finished,
            "active": st.get("active", 0)}


def pod_outcome(pod: dict[str, Any]) -> tuple[dict[str, str], str]:
    """(results, message) of a finished task pod: the reporter's JSON, or which step failed and why."""
    st = pod.get("status") or {}
    results: dict[str, str] = {}
    message = ""
    for cs in (*(st.get("initContainerStatuses") or ()), *(st.get("containerStatuses") or ())):
        term = (cs.get("state") or {}).get("terminated") or {}
        if not term:
            continue
        text = (term.get("message") or "").strip()
        if cs["name"] == REPORTER and term.get("exitCode") == 0:
            try:
                results = {k: str(v) for k, v in json.loads(text or "{}").items()}
            except ValueError:
                message = f"the results reporter wrote no JSON: {text[:200]}"
        elif term.get("exitCode") not in (0, None) and not message:
            who = cs["name"].removeprefix("step-") if cs["name"] != REPORTER else "results"
            message = f"step {who} exited with code {term['exitCode']}" + (f" ({term['reason']})" if
                                                                         term.get("reason") not in (None, "Error") else "")
            if text:
                message += ": " + text[-1500:]
    if not message and st.get("phase") == "Failed":
        message = st.get("message") or st.get("reason") or "the pod failed"
    return results, message


# ------------------------------------------------------------------ the canary of a canary task

CANARY_LABEL = "mpcloud.io/canary"  # on the canary Deployment's pods: the pipeline task that runs it


def canary_name(app: str) -> str:
    """The canary Deployment of an app (one canary per app at a time: a second run's canary fails on the name)."""
    return bounded(f"{app}-canary")


def canary_deployment(run: PipelineRun, task: str, app: Any, replicas: int) -> dict[str, Any]:
    """The canary: the app's own Deployment (its builders: the same hardened, sandboxed pod, Service selector
    labels, so the Service sends it its share of traffic) with the new image (`app` already carries it), its own
    name and selector, `replicas` pods, owned by the run (deleted with it; the stable Deployment is not touched)."""
    from mpcloud_operator.miniprogramapp import resources as app_resources

    dep = app_resources.deployment(app)
    canary = {CANARY_LABEL: bounded(f"{run.metadata.name}.{task}")[:63].strip(".-_")}
    meta = dep["metadata"]
    meta.update(name=canary_name(app.metadata.name), labels={**meta["labels"], RUN_LABEL: run.metadata.name, **canary},
                ownerReferences=[owner_reference(run)])
    spec = dep["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {**spec["selector"]["matchLabels"], **canary}}
    spec["template"]["metadata"]["labels"] = {**spec["template"]["metadata"]["labels"], **canary}
    spec["template"]["metadata"].pop("annotations", None)  # the stable pods' credential digest: not the canary's
    return dep


def canary_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a canary Deployment its task reads: whose it is, and whether its pods of its template are ready."""
    meta, st = obj["metadata"], obj.get("status") or {}
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or () if r.get("controller")), None)
    return {"owner": owner, "generation": meta.get("generation"), "replicas": (obj.get("spec") or {}).get("replicas"),
            "observedGeneration": st.get("observedGeneration"), "readyReplicas": st.get("readyReplicas", 0),
            "updatedReplicas": st.get("updatedReplicas", 0)}
