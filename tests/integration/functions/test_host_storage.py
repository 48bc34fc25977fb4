"""A runtime host process whose handlers use context.storage on a real SeaweedFS S3, with the function's own keys.

The bucket and the identity come from backing.s3 (as the operator provisions them); the host gets the binding as
environment variables, exactly as a function pod gets them from its Secret.
"""

from __future__ import annotations

import pytest
import requests

from tests.integration.functions.storage.conftest import new_keys, provisioner, seaweed, tenants  # noqa: F401

pytestmark = pytest.mark.integration

PY = """\
async def main(event, context):
    s = context.storage
    await s.put("pics/1.txt", "a picture, honestly", "text/plain")
    return {"data": (await s.get("pics/1.txt")).decode(), "keys": [o["key"] for o in await s.list("pics/")],
            "url": await s.presign_get("pics/1.txt", 60)}
"""

JS = """\
exports.main = async (event, context) => {
  await context.storage.put('pics/2.bin', Buffer.from([1, 2, 3]));
  const data = await context.storage.get('pics/2.bin');
  if (event.path === '/missing') return await context.storage.get('nope');
  return { data: Array.from(data), url: await context.storage.presignPut('pics/3.bin', 60) };
};
"""


@pytest.mark.parametrize("runtime,files", [("python3.11", {"index.py": PY}), ("nodejs20", {"index.js": JS})])
def test_handlers_put_get_list_and_presign_in_their_bucket(procs, seaweed, provisioner, tenants, monkeypatch,  # noqa: F811
                                                           runtime, files):
    tenant = tenants.new()
    access_key, secret_key = new_keys()
    provisioner.ensure_identity(tenant, "pic", "readWrite", access_key, secret_key)
    tenants.made.append((tenant, "pic"))
    env = {"MPCLOUD_S3_ENDPOINT": seaweed.url, "MPCLOUD_S3_PUBLIC_ENDPOINT": seaweed.url,
           "MPCLOUD_S3_ACCESS_KEY": access_key, "MPCLOUD_S3_SECRET_KEY": secret_key,
           "MPCLOUD_S3_BUCKET": provisioner.bucket(tenant)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    host = procs.host(runtime, files)
    r = requests.get(f"{host.url}/", timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"].startswith(seaweed.url) and "X-Amz-Signature" in body["url"]
    if runtime == "python3.11":
        assert body["data"] == "a picture, honestly" and body["keys"] == ["pics/1.txt"]
        assert requests.get(body["url"], timeout=30).text == "a picture, honestly"  # what a client would fetch
    else:
        assert body["data"] == [1, 2, 3]
        missing = requests.get(f"{host.url}/missing", timeout=60)
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
