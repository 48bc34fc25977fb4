"""Unit tests for the shared API parts added for hardening: image references, imagePolicy, runAs."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from mpcloud_operator import crdgen
from mpcloud_operator.api.parts import IMAGE_DIGEST_REQUIRED, RunAs
from mpcloud_operator.api.types import IMAGE_REFERENCE, VALID_IMAGE, ImageRef, image_name
from mpcloud_operator.miniprogramapp.model import MiniProgramAppSpec

SHA256 = "sha256:" + "f" * 64
SHA512 = "sha512:" + "f" * 128
IMAGE = TypeAdapter(ImageRef)

# From github.com/distribution/reference reference_test.go (TestReferenceParse), plus everyday images.
VALID = [
    "test_com", "test.com:tag", "test.com:5000", "test.com/repo:tag", "test:5000/repo", "test:5000/repo:tag",
    f"test:5000/repo@{SHA256}", f"test:5000/repo:tag@{SHA256}", "lowercase:Uppercase",
    "a/" * 127 + "a:tag-puts-this-over-max", "sub-dom1.foo.com/bar/baz/quux",
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag", "b.gcr.io/test.example.com/my-app:test.example.com",
    "xn--n3h.com/myimage:xn--n3h.com", f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", "foo_bar.com:8080",
    "foo/foo_bar.com:8080", "192.168.1.1", "192.168.1.1:tag", "192.168.1.1:5000", "192.168.1.1/repo",
    "192.168.1.1:5000/repo", "192.168.1.1:5000/repo:5050", "[2001:db8::1]/repo", "[2001:db8:1:2:3:4:5:6]/repo:tag",
    "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo:tag", f"[2001:db8::1]:5000/repo@{SHA256}",
    f"[2001:db8::1]:5000/repo:tag@{SHA256}", "[2001:db8::]:5000/repo", "[::1]:5000/repo",
    "Example.com/team/app", "localhost/app", "localhost:5000/app:1.0", "a" * 255 + ":" + "t" * 128,
    "nginx", "nginxinc/nginx-unprivileged:1.27", "ghcr.io/mpcloud/mpcloud-operator:0.1.0", "repo__x/a--b.c_d:v1",
]
INVALID = [
    # distribution's failures
    ":justtag", f"@{SHA256}", "repo@sha256:" + "f" * 34, "validname@invaliddigest:" + "f" * 64, "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag", "a/" * 128 + "a:tag", "aa/asdf$$^/aa", "[2001:db8::1]", "[2001:db8::1]:5000",
    "[2001:db8::1]:tag", "[fe80::1%eth0]:5000/repo", "[fe80::1%@invalidzone]:5000/repo",
    # distribution's FIXME ("Uppercase" taken as a registry host): rejected here
    "Uppercase/lowercase:tag", "UPPER/case",
    # everyday mistakes
    "", "nginx:", "a b", "foo@sha256:xyz", "nginx:latest ", " nginx", "nginx:-1", "nginx:.x", "nginx:" + "t" * 129,
    "foo//bar", "foo/", "/foo", "-foo", "foo-", "foo..bar", "foo___bar", "https://ghcr.io/x", "foo@SHA256:" + "f" * 64,
    "foo@sha256:" + "F" * 64, "nginx\n", "ｎginx", "a" * 256,
]


@pytest.mark.parametrize("ref", VALID)
def test_valid_references_are_accepted(ref):
    assert IMAGE.validate_python(ref) == ref


@pytest.mark.parametrize("ref", INVALID)
def test_invalid_references_are_rejected_with_the_crd_message(ref):
    with pytest.raises(ValidationError) as err:
        IMAGE.validate_python(ref)
    if ref:  # the empty string fails min_length first
        assert VALID_IMAGE.message in str(err.value)


def test_image_name_strips_tag_and_digest():
    assert image_name(f"localhost:5000/app:1.0@{SHA256}") == "localhost:5000/app"
    assert image_name("[::1]:5000/repo") == "[::1]:5000/repo"
    assert image_name("test.com:5000") == "test.com"


def test_pattern_is_re2_compatible_and_fits_a_cel_string():
    # RE2 (the API server's engine) has no lookarounds or backreferences; the CEL literal is r'...'.
    for construct in ("(?=", "(?!", "(?<", "\\1", "'"):
        assert construct not in IMAGE_REFERENCE
    assert f"self.matches(r'{IMAGE_REFERENCE}')" in VALID_IMAGE.rule


def spec(**extra):
    return {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}], **extra}


def test_require_digest():
    assert MiniProgramAppSpec.model_validate(spec()).image_policy.require_digest is False
    with pytest.raises(ValidationError, match=IMAGE_DIGEST_REQUIRED.message.replace("(", r"\(").replace(")", r"\)")):
        MiniProgramAppSpec.model_validate(spec(imagePolicy={"requireDigest": True}))
    pinned = MiniProgramAppSpec.model_validate(spec(image=f"ghcr.io/team/app:1.0@{SHA256}",
                                                    imagePolicy={"requireDigest": True}))
    assert pinned.image_policy.require_digest


@pytest.mark.parametrize("run_as", [{"user": 0}, {"group": 0}, {"user": -1}, {"user": 2**31}, {"group": 2**31}])
def test_run_as_is_never_root_and_bounded(run_as):
    with pytest.raises(ValidationError):
        MiniProgramAppSpec.model_validate(spec(runAs=run_as))


def test_run_as_defaults_to_a_high_uid():
    assert (RunAs().user, RunAs().group) == (10001, 10001)
    assert RunAs().user >= 10000


def test_crd_carries_the_rules():
    root = crdgen.all_crds()["miniprogramapps.mpcloud.io.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_schema = root["properties"]["spec"]
    image = spec_schema["properties"]["image"]
    assert image["x-kubernetes-validations"] == [VALID_IMAGE.as_schema()]
    assert image["maxLength"] == 512 and "pattern" not in image  # one clear message, not a regex dump
    assert IMAGE_DIGEST_REQUIRED.as_schema() in spec_schema["x-kubernetes-validations"]
    assert spec_schema["properties"]["imagePolicy"]["default"] == {"requireDigest": False}
    run_as = spec_schema["properties"]["runAs"]
    assert run_as["default"] == {"user": 10001, "group": 10001}
    assert run_as["properties"]["user"]["minimum"] == 1 and run_as["properties"]["group"]["minimum"] == 1


def test_pull_policy_follows_the_reference_unless_set():
    tagged = MiniProgramAppSpec.model_validate(spec())
    assert tagged.image_policy.pull_policy_for(tagged.image) == "Always"  # a tag can move
    pinned = MiniProgramAppSpec.model_validate(spec(image="registry.example.com/a/b@sha256:" + "0" * 64))
    assert pinned.image_policy.pull_policy_for(pinned.image) == "IfNotPresent"
    local = MiniProgramAppSpec.model_validate(spec(imagePolicy={"pullPolicy": "Never"}))
    assert local.image_policy.pull_policy_for(local.image) == "Never"
