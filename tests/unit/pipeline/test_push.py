"""Git push webhooks, pure part: signatures (GitHub HMAC, GitLab token), payloads, branch filters, run bodies."""

from __future__ import annotations

import pytest

from mpcloud_operator.pipeline import push
from mpcloud_operator.pipeline.model import Pipeline
from mpcloud_operator.pipeline.push import WebhookError
from mpcloud_operator.pipeline.triggers import EVENT_PARAMS, GitTrigger, TriggerParam
from tests.unit.pipeline.triggerfixtures import SECRET, SHA, github_push, gitlab_push, pipeline


def test_github_signature_is_hmac_sha256_of_the_body():
    # GitHub's documented example (docs: "Validating webhook deliveries").
    assert push.github_signature(b"It's a Secret to Everybody", b"Hello, World!") == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


@pytest.mark.parametrize("make,change,error", [
    (github_push, None, None),
    (github_push, {"secret_value": b"wrong"}, "InvalidSignature"),
    (github_push, {"secret_value": None}, "MissingSignature"),
    (gitlab_push, None, None),
    (gitlab_push, {"token": "wrong"}, "InvalidSignature"),
    (gitlab_push, {"token": None}, "MissingSignature"),
])
def test_verify_good_bad_and_missing(make, change, error):
    headers, body = make(**(change or {}))
    if error is None:
        push.verify(headers, body, SECRET)
        return
    with pytest.raises(WebhookError) as exc:
        push.verify(headers, body, SECRET)
    assert (exc.value.status, exc.value.type) == (401, error)


def test_a_changed_body_fails_the_signature():
    headers, body = github_push()
    with pytest.raises(WebhookError, match="does not match"):
        push.verify(headers, body.replace(b"main", b"evil"), SECRET)


def test_an_empty_secret_refuses_everything_and_unknown_senders_are_400():
    headers, body = github_push(secret_value=b"")
    with pytest.raises(WebhookError) as exc:
        push.verify(headers, body, b"")
    assert exc.value.status == 401
    with pytest.raises(WebhookError) as exc:
        push.verify({"Content-Type": "application/json"}, body, SECRET)
    assert (exc.value.status, exc.value.type) == (400, "UnknownSender")


def test_parse_github_and_gitlab_pushes():
    gh = push.parse(*github_push())
    assert (gh.provider, gh.event, gh.delivery, gh.branch, gh.revision, gh.repo_url, gh.repo_name) == \
        ("github", "push", "d-1", "main", SHA, "http://git.local/shop.git", "team/shop")
    gl = push.parse(*gitlab_push(ref="refs/heads/release/1.2"))
    assert (gl.provider, gl.delivery, gl.branch, gl.repo_url, gl.pusher) == \
        ("gitlab", "g-1", "release/1.2", "http://gitlab.local/team/shop.git", "dev")
    assert set(gh.values()) == set(EVENT_PARAMS)


def test_parse_refuses_other_events_and_bad_bodies():
    headers, body = github_push()
    with pytest.raises(WebhookError, match="only push events"):
        push.parse({**headers, "X-GitHub-Event": "issues"}, body)
    with pytest.raises(WebhookError, match="not JSON"):
        push.parse(headers, b"{nope")
    with pytest.raises(WebhookError, match="ref and after"):
        push.parse(headers, b'{"ref": 1}')
    assert push.parse({**headers, "X-GitHub-Event": "ping"}, b'{"zen": "x"}').event == "ping"


@pytest.mark.parametrize("globs,ref,ok", [
    ([], "refs/heads/anything", True),
    (["main"], "refs/heads/main", True),
    (["main"], "refs/heads/mainline", False),
    (["release/*"], "refs/heads/release/1.2", True),
    (["release/*"], "refs/heads/feature/x", False),
    ([], "refs/tags/v1.0", False),  # tags never start a branch trigger
])
def test_branch_filters(globs, ref, ok):
    assert push.branch_matches(globs, push.PushEvent("github", "push", "", ref=ref).branch) is ok


def test_run_body_from_a_push():
    pl = Pipeline.from_body(pipeline())
    trigger = pl.spec.triggers.git[0]
    event = push.parse(*github_push())
    body = push.run_body("ci", "shop", {p.name for p in pl.spec.params}, trigger, event)
    assert body["metadata"]["name"] == push.run_name("shop", "git/push/d-1")
    assert body["metadata"]["name"].startswith("shop-") and len(body["metadata"]["name"]) == len("shop-") + 10
    assert body["metadata"]["labels"] == {"mpcloud.io/trigger": "push", "mpcloud.io/trigger-type": "git",
                                          "mpcloud.io/pipeline": "shop", "mpcloud.io/commit": SHA}
    assert body["metadata"]["annotations"]["mpcloud.io/delivery"] == "github/d-1"
    # Only the params the pipeline declares (a run may give no other): revision and repo-url here.
    assert body["spec"] == {"pipelineRef": {"name": "shop"}, "params": [
        {"name": "revision", "value": SHA}, {"name": "repo-url", "value": "http://git.local/shop.git"}]}


def test_fixed_trigger_params_win_and_names_are_deterministic():
    trigger = GitTrigger(name="push", secret_ref={"name": "hook"}, params=[TriggerParam(name="revision", value="x")])
    event = push.parse(*github_push(delivery="same"))
    a = push.run_body("ci", "shop", {"revision"}, trigger, event)
    b = push.run_body("ci", "shop", {"revision"}, trigger, push.parse(*github_push(delivery="same")))
    c = push.run_body("ci", "shop", {"revision"}, trigger, push.parse(*github_push(delivery="other")))
    assert a["spec"]["params"] == [{"name": "revision", "value": "x"}]
    assert a["metadata"]["name"] == b["metadata"]["name"] != c["metadata"]["name"]


def test_without_a_delivery_id_the_ref_update_is_the_identity():
    headers, body = github_push()
    del headers["X-GitHub-Delivery"]
    event = push.parse(headers, body)
    assert event.identity == f"refs/heads/main:{'0' * 40}:{SHA}"


def test_long_pipeline_names_stay_in_label_and_name_limits():
    long = "p" * 100
    assert len(push.run_name(long, "k")) <= 51
    assert push.label_safe(long) is None and push.label_safe("shop") == "shop"
    assert "mpcloud.io/pipeline" not in push.trigger_labels(long, "push", "git")


def test_run_spec_of_the_triggers_goes_into_every_run_and_is_checked():
    body = pipeline()
    body["spec"]["triggers"]["runSpec"] = {"workspaces": [{"name": "src", "emptyDir": {}}],
                                           "sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True}}
    pl = Pipeline.from_body(body)
    run = push.run_body("ci", "shop", set(), pl.spec.triggers.git[0], push.parse(*github_push()),
                        pl.spec.triggers.run_spec)
    assert run["spec"]["workspaces"] == [{"name": "src", "emptyDir": {}}]
    assert run["spec"]["pipelineRef"] == {"name": "shop"}
    body["spec"]["triggers"]["runSpec"] = {"params": []}
    with pytest.raises(ValueError, match="may not set"):
        Pipeline.from_body(body)
    body["spec"]["triggers"]["runSpec"] = {"timeouts": {"pipeline": "soon"}}
    with pytest.raises(ValueError):
        Pipeline.from_body(body)
