"""functions.storage's pure parts: key and expiry checks, environment parsing, local pre-signing."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from mpcloud_operator.functions import storage
from mpcloud_operator.functions.storage import BadRequest, Storage


@pytest.mark.parametrize("key", ["a", "photos/2026/x.png", "日本/写真.jpg", "k" * 1024])
def test_good_keys(key):
    assert storage.check_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * 1025, "a\nb", "a\x00b", None])
def test_bad_keys(key):
    with pytest.raises(BadRequest):
        storage.check_key(key)


@pytest.mark.parametrize("expires", [0, -1, 7 * 24 * 3600 + 1])
def test_bad_expiry(expires):
    with pytest.raises(BadRequest, match="expires"):
        storage.check_expires(expires)


def test_error_types_are_what_the_host_reports():
    assert storage.StorageUnavailable("x").type == "StorageUnavailable"
    assert storage.PermissionDenied("x").type == "PermissionDenied"
    assert storage.NotFound("x").type == "NotFound"
    assert storage.BadRequest("x").type == "BadRequest"


def test_from_env():
    assert Storage.from_env({}) is None
    s = Storage.from_env({"MPCLOUD_S3_ENDPOINT": "http://10.0.0.1:8333", "MPCLOUD_S3_BUCKET": "b",
                          "MPCLOUD_S3_ACCESS_KEY": "AK", "MPCLOUD_S3_SECRET_KEY": "SK12345678",
                          "MPCLOUD_S3_PUBLIC_ENDPOINT": "http://127.0.0.1:9000"})
    assert s is not None and s.bucket == "b"


def test_presigned_urls_are_signed_locally_for_the_public_endpoint():
    # Nothing listens on either address: signing must not need the server.
    s = Storage("http://127.0.0.1:9", "AKEXAMPLE", "secretsecret", "mpc-b-1", public_endpoint="http://files.test:8080")
    get_url = asyncio.run(s.presign_get("a/b.png", expires=60))
    put_url = asyncio.run(s.presign_put("a/b.png", expires=60))
    for url in (get_url, put_url):
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == ("http", "files.test:8080", "/mpc-b-1/a/b.png")
        q = parse_qs(parts.query)
        assert q["X-Amz-Expires"] == ["60"] and q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert q["X-Amz-Credential"][0].startswith("AKEXAMPLE/")
    assert get_url != put_url


def test_unreachable_server_is_storage_unavailable():
    s = Storage("http://127.0.0.1:9", "AK", "secretsecret", "bkt", timeout=2)
    with pytest.raises(storage.StorageUnavailable, match="unreachable"):
        asyncio.run(s.get("x"))


def test_server_errors_are_typed_by_code_and_status():
    from minio.error import S3Error

    s = Storage("http://127.0.0.1:9", "AK", "secretsecret", "bkt")

    class Resp:
        def __init__(self, status):
            self.status = status

    def err(code, status):
        return s._translate("get 'k'", S3Error(Resp(status), code, "msg", "/bkt/k", "r", "h"))

    assert isinstance(err("AccessDenied", 403), storage.PermissionDenied)
    assert isinstance(err("InvalidAccessKeyId", 403), storage.PermissionDenied)
    assert isinstance(err("NoSuchKey", 404), storage.NotFound)
    assert isinstance(err("InternalError", 500), storage.StorageUnavailable)
    assert isinstance(err("EntityTooLarge", 400), storage.BadRequest)
    s.close()
