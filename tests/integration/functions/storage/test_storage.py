"""The runtime's Storage against a real SeaweedFS: objects in, out, listed, deleted; pre-signed URLs."""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request

import pytest

from mpcloud_operator.functions.storage import NotFound

pytestmark = pytest.mark.integration


def run(coro):
    return asyncio.run(coro)


def test_put_get_list_delete(tenants):
    st = tenants.bind(tenants.new(), "crud")
    info = run(st.put("photos/a.png", b"\x89PNG...", "image/png"))
    assert info["size"] == 7 and info["etag"]
    run(st.put("photos/b.txt", "hello 世界"))
    run(st.put("notes/c.txt", "c"))
    assert run(st.get("photos/a.png")) == b"\x89PNG..."
    assert run(st.get("photos/b.txt")).decode() == "hello 世界"
    listed = run(st.list("photos/"))
    assert [o["key"] for o in listed] == ["photos/a.png", "photos/b.txt"]
    assert listed[0]["size"] == 7 and listed[0]["lastModified"]
    assert [o["key"] for o in run(st.list())] == ["notes/c.txt", "photos/a.png", "photos/b.txt"]
    assert len(run(st.list(limit=2))) == 2
    run(st.delete("photos/a.png"))
    with pytest.raises(NotFound):
        run(st.get("photos/a.png"))
    run(st.delete("photos/a.png"))  # deleting what is gone is fine (as in S3)
    assert [o["key"] for o in run(st.list("photos/"))] == ["photos/b.txt"]


def test_overwrite_replaces_the_object(tenants):
    st = tenants.bind(tenants.new(), "overwrite")
    run(st.put("k", b"one"))
    run(st.put("k", b"two"))
    assert run(st.get("k")) == b"two"


def test_large_object_goes_through_multipart_upload(tenants):
    st = tenants.bind(tenants.new(), "big")
    data = os.urandom(6 * 1024 * 1024 + 17)  # above minio's 5 MiB part: CreateMultipartUpload/UploadPart/Complete
    assert run(st.put("big.bin", data))["size"] == len(data)
    assert run(st.get("big.bin")) == data


def test_missing_object_is_not_found(tenants):
    st = tenants.bind(tenants.new(), "missing")
    with pytest.raises(NotFound, match="NoSuchKey"):
        run(st.get("nope"))


def test_presigned_get_and_put_work_with_plain_http(tenants):
    st = tenants.bind(tenants.new(), "presign")
    run(st.put("pic.jpg", b"jpeg-bytes", "image/jpeg"))
    with urllib.request.urlopen(run(st.presign_get("pic.jpg", expires=120)), timeout=10) as r:
        assert r.status == 200 and r.read() == b"jpeg-bytes"
    req = urllib.request.Request(run(st.presign_put("upload/from-client.jpg", expires=120)), data=b"client-bytes",
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    assert run(st.get("upload/from-client.jpg")) == b"client-bytes"


def test_unsigned_and_tampered_urls_are_refused(tenants):
    st = tenants.bind(tenants.new(), "tamper")
    run(st.put("secret.txt", b"s"))
    bare = f"{tenants.seaweed.url}/{st.bucket}/secret.txt"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bare, timeout=10)
    assert err.value.code == 403
    url = run(st.presign_get("secret.txt"))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url.replace("secret.txt", "other.txt"), timeout=10)
    assert err.value.code == 403
