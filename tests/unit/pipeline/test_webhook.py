"""The webhook's behaviour over a fake API: 401 and nothing created for bad signatures, one run per delivery,
branch filters, the Secret opt-in, and the HTTP layer on a real socket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from mpcloud_operator.config import TRIGGER_FIELD_MANAGER
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.pipeline import webhook
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient
from tests.unit.pipeline.triggerfixtures import SHA, github_push, gitlab_push, pipeline, secret

PATH = "/hooks/git/ci/shop/push"


def hooks(*objects, forbidden=frozenset()):
    kube = FakeClient([pipeline(), *objects], forbidden=set(forbidden))
    return webhook.Webhooks(Runtime.for_kinds(kube, KINDS)), kube


def runs(kube):
    return [o for (k, _, _), o in kube.objects.items() if k == "PipelineRun"]


def test_a_good_push_creates_one_run_and_a_duplicate_delivery_finds_it():
    wh, kube = hooks(secret())
    status, out = wh.handle(PATH, *github_push())
    assert status == 201 and out["run"].startswith("shop-")
    [run] = runs(kube)
    assert {"name": "revision", "value": SHA} in run["spec"]["params"]
    assert ("create", "PipelineRun") in kube.verbs("create")
    assert ("Triggered", "Normal") in kube.events()
    status, again = wh.handle(PATH, *github_push())
    assert (status, again["run"], again["duplicate"]) == (200, out["run"], True)
    assert len(runs(kube)) == 1
    status, other = wh.handle(PATH, *github_push(delivery="d-2"))
    assert status == 201 and len(runs(kube)) == 2


@pytest.mark.parametrize("change,error", [({"secret_value": b"wrong"}, "InvalidSignature"),
                                          ({"secret_value": None}, "MissingSignature")])
def test_bad_or_missing_signatures_are_401_and_create_nothing(change, error):
    wh, kube = hooks(secret())
    status, out = wh.handle(PATH, *github_push(**change))
    assert (status, out["error"]["type"]) == (401, error)
    assert runs(kube) == [] and kube.verbs("create") == []


def test_gitlab_tokens():
    wh, kube = hooks(secret())
    assert wh.handle(PATH, *gitlab_push(token="nope"))[0] == 401
    status, out = wh.handle(PATH, *gitlab_push())
    assert status == 201
    [run] = runs(kube)
    assert {"name": "repo-url", "value": "http://gitlab.local/team/shop.git"} in run["spec"]["params"]


def test_other_branches_tags_and_deletions_start_nothing():
    wh, kube = hooks(secret())
    for ref, after in (("refs/heads/feature/x", SHA), ("refs/tags/v1", SHA), ("refs/heads/main", "0" * 40)):
        status, out = wh.handle(PATH, *github_push(ref=ref, after=after))
        assert status == 200 and "skipped" in out
    assert runs(kube) == []


def test_the_trigger_name_may_be_left_out_when_there_is_one_and_unknown_ones_are_404():
    wh, kube = hooks(secret())
    assert wh.handle("/hooks/git/ci/shop", *github_push())[0] == 201
    assert wh.handle("/hooks/git/ci/shop/other", *github_push())[0] == 404
    assert wh.handle("/hooks/git/ci/nope/push", *github_push())[1]["error"]["type"] == "PipelineNotFound"
    assert wh.handle("/elsewhere", *github_push())[0] == 404


def test_without_the_opt_in_the_secret_is_forbidden_503_naming_the_rolebinding():
    wh, kube = hooks(secret(), forbidden={"Secret"})
    status, out = wh.handle(PATH, *github_push())
    assert (status, out["error"]["type"]) == (503, "TriggerSecretForbidden")
    assert "--clusterrole=mpcloud-operator-triggers" in out["error"]["message"]
    assert ("TriggerSecretForbidden", "Warning") in kube.events() and runs(kube) == []


def test_a_missing_secret_or_key_is_503():
    wh, _ = hooks()
    assert wh.handle(PATH, *github_push())[1]["error"]["type"] == "TriggerSecretNotFound"
    wh, _ = hooks(secret(key="token"))
    assert "has no key 'secret'" in wh.handle(PATH, *github_push())[1]["error"]["message"]


def test_ping_answers_pong_after_the_signature():
    wh, kube = hooks(secret())
    headers, body = github_push()
    headers["X-GitHub-Event"] = "ping"
    assert wh.handle(PATH, headers, body) == (200, {"outcome": "ping", "message": "pong"})
    assert runs(kube) == []


def test_http_layer():
    from mpcloud_operator.devenv.ports import free_port

    wh, kube = hooks(secret())
    port = free_port()
    server = webhook.serve(wh, "127.0.0.1", port)
    try:
        headers, body = github_push()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201 and "run" in json.loads(response.read())
        bad = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", data=body + b" ", headers=headers,
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(bad, timeout=5)
        assert exc.value.code == 401
        assert json.loads(exc.value.read())["error"]["type"] == "InvalidSignature"
    finally:
        server.shutdown()
        server.server_close()
    assert TRIGGER_FIELD_MANAGER == "mpcloud-triggers"
