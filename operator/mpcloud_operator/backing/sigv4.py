"""AWS Signature Version 4 for a form-encoded POST or a GET: what the IAM query API needs.

The S3 client library (minio) signs its own S3 requests but offers no IAM client and no public signer for other
services, so the provisioner signs its IAM calls here. Pure: the clock is a parameter.
Reference: "Create a signed AWS API request" (AWS General Reference), tested against its worked example.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~%")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(method: str, url: str, headers: dict[str, str], body: bytes, *, access_key: str, secret_key: str,
         region: str, service: str, now: datetime | None = None) -> dict[str, str]:
    """`headers` plus Host, X-Amz-Date and Authorization for this request (every header given is signed)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    parts = urlsplit(url)
    payload_hash = hashlib.sha256(body).hexdigest()
    out = {k: v for k, v in headers.items()}
    out.setdefault("Host", parts.netloc)
    out["X-Amz-Date"] = stamp
    signed = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    names = sorted(signed)
    canonical = "\n".join([
        method.upper(),
        quote(parts.path or "/", safe="/-_.~%"),
        _canonical_query(parts.query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names),
        payload_hash,
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, day, region, service), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    out["Authorization"] = (f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                            f"Signature={signature}")
    return out
