"""backing.s3's pure parts: bucket and identity names, the policy document, endpoint parsing; backing.sigv4."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from mpcloud_operator.backing import s3, sigv4

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@pytest.mark.parametrize("tenant", [
    "todo/default", "todo/app", "a/b", "Team_X/My.App", "x" * 63 + "/" + "y" * 63, "ns/-weird--app-", "ns/___",
])
def test_bucket_names_are_dns_safe(tenant):
    name = s3.bucket_name(tenant)
    assert BUCKET_RE.match(name), name
    assert "--" not in name[:-9]
    assert not re.match(r"^\d+\.\d+\.\d+\.\d+$", name)


def test_bucket_name_is_stable_readable_and_hashed():
    assert s3.bucket_name("todo/default") == s3.bucket_name("todo/default")
    assert s3.bucket_name("todo/default").startswith("mpc-todo-default-")
    assert s3.bucket_name("todo") == s3.bucket_name("todo/default")  # a bare namespace is its default app


def test_tenants_that_slug_alike_get_different_buckets():
    assert s3.bucket_name("a-b/c") != s3.bucket_name("a/b-c")
    assert s3.bucket_name("a/B") != s3.bucket_name("a/b")
    long_a, long_b = "n/" + "x" * 80 + "1", "n/" + "x" * 80 + "2"
    assert s3.bucket_name(long_a) != s3.bucket_name(long_b)


def test_bucket_prefix_is_configurable():
    assert s3.bucket_name("todo/app", prefix="dev-").startswith("dev-todo-app-")


@pytest.mark.parametrize("bad", ["", "/app", "a/b/c"])
def test_bad_tenant_is_refused(bad):
    with pytest.raises(ValueError, match="tenant"):
        s3.bucket_name(bad)


def test_identity_names_fit_iam_and_are_unique():
    names = {s3.identity_name(t, f) for t in ("a/b", "a-b/c", "a/b-c") for f in ("add", "list", "x" * 100)}
    assert len(names) == 9
    for name in names:
        assert re.match(r"^[A-Za-z0-9.-]{1,64}$", name), name
    assert s3.identity_name("todo/default", "add-todo").startswith("cf.todo.default.add-todo.")
    with pytest.raises(ValueError):
        s3.identity_name("todo/default", "")


def _actions(doc: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        for res in st["Resource"]:
            out.setdefault(res, set()).update(st["Action"])
    return out


def test_read_policy_allows_get_and_list_on_its_bucket_only():
    acts = _actions(s3.policy_document("mpc-todo-1", "read"))
    assert acts == {"arn:aws:s3:::mpc-todo-1/*": {"s3:GetObject"},
                    "arn:aws:s3:::mpc-todo-1": {"s3:ListBucket", "s3:GetBucketLocation"}}


def test_read_write_policy_adds_put_and_delete_on_objects():
    acts = _actions(s3.policy_document("b1", "readWrite"))
    assert acts["arn:aws:s3:::b1/*"] == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                         "s3:AbortMultipartUpload"}
    assert set(acts) == {"arn:aws:s3:::b1/*", "arn:aws:s3:::b1"}  # no wildcard bucket, no other bucket


def test_unknown_access_is_refused():
    with pytest.raises(ValueError, match="access"):
        s3.policy_document("b", "admin")  # type: ignore[arg-type]


def test_canonical_policy_ignores_how_a_server_reserialises():
    doc = s3.policy_document("b1", "readWrite")
    # What SeaweedFS's GetUserPolicy answers: one-item lists become strings; order may change.
    echoed = {"Version": doc["Version"], "Statement": [
        {**st, "Action": list(reversed(st["Action"])) if len(st["Action"]) > 1 else st["Action"][0],
         "Resource": st["Resource"][0]} for st in reversed(doc["Statement"])]}
    assert s3.canonical_policy(echoed) == s3.canonical_policy(doc)
    assert s3.canonical_policy(s3.policy_document("b1", "read")) != s3.canonical_policy(doc)
    assert s3.canonical_policy(s3.policy_document("b2", "readWrite")) != s3.canonical_policy(doc)
    assert s3.canonical_policy(None) is None


def test_fingerprint_changes_with_the_secret():
    assert s3.secret_fingerprint("K", "s1") != s3.secret_fingerprint("K", "s2")
    assert s3.secret_fingerprint("K", "s1") == s3.secret_fingerprint("K", "s1")


@pytest.mark.parametrize("endpoint,want", [
    ("http://127.0.0.1:8333", ("127.0.0.1:8333", False)),
    ("https://s3.example:443/", ("s3.example:443", True)),
    ("127.0.0.1:8333", ("127.0.0.1:8333", False)),
])
def test_split_endpoint(endpoint, want):
    assert s3.split_endpoint(endpoint) == want


def test_split_endpoint_refuses_other_schemes():
    with pytest.raises(ValueError):
        s3.split_endpoint("ftp://x")


def test_sigv4_matches_the_aws_worked_example():
    # "Create a signed AWS API request", AWS General Reference: IAM ListUsers, 2015-08-30T12:36:00Z.
    headers = sigv4.sign("GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
                         {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, b"",
                         access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                         region="us-east-1", service="iam",
                         now=datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc))
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_sigv4_signs_the_body():
    args = dict(access_key="A", secret_key="S", region="us-east-1", service="iam",
                now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    a = sigv4.sign("POST", "http://h:1/", {}, b"Action=ListUsers", **args)["Authorization"]
    b = sigv4.sign("POST", "http://h:1/", {}, b"Action=GetUser", **args)["Authorization"]
    assert a != b
