"""File storage provisioning on an S3 server: a bucket per tenant, an identity per function limited to it.

A tenant is "<namespace>/<app>". Its bucket is named from both parts plus a short hash of the pair (so that
"a-b/c" and "a/b-c" never share a bucket, and a long pair still fits S3's 63 characters). Each function gets an
IAM user of its own holding exactly one access key (the one the caller derived) and one inline policy that allows
object read and list — plus write and delete for `readWrite` — on its tenant's bucket and nothing else. The S3
server itself enforces it: code that takes the key and talks S3 directly still cannot reach another bucket.

How identities change at run time, and why the IAM API: SeaweedFS can take identities from (a) a static
`-s3.config` file, read once at start; (b) `weed shell s3.configure`, which needs the `weed` binary and gRPC
access to the master and filer next to the operator; (c) files under the filer's `/etc/iam/` that the S3 server
watches, which means writing SeaweedFS's internal JSON through the filer — an unauthenticated internal port —
with last-writer-wins races between operator replicas; or (d) its embedded AWS IAM query API on the S3 port
(`weed server -s3.iam -s3.iam.readOnly=false`). We use (d): it is authenticated with the admin key on the one
endpoint we already have, validated by the server (bad policies are refused, not half-applied), each call
changes one user (no read-modify-write of a shared file), SeaweedFS persists it through its credential store and
reloads at once on the server that answered (peers get it pushed over gRPC), and the same calls work against
other S3 servers that speak IAM. SeaweedFS turns the policy into its own actions ("Read:<bucket>",
"List:<bucket>", "Write:<bucket>"), which is what its request check matches.

Each identity is tagged with its function (`mpcloud-namespace`, `mpcloud-app`, `mpcloud-function`):
`function_identities()` lists them for the operator's garbage sweep (users without those tags are never touched).

Every call is idempotent and reads before it writes, so calling it on every reconcile costs reads only.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from mpcloud_operator.backing import sigv4

Access = Literal["read", "readWrite"]
POLICY_NAME = "mpcloud-bucket"
IAM_VERSION = "2010-05-08"
_IAM_NS = re.compile(r"^\{[^}]*\}")


class ProvisioningError(RuntimeError):
    """The S3 server refused a provisioning call; `.code` is its error code."""

    def __init__(self, message: str, code: str = "Error"):
        super().__init__(message)
        self.code = code


class S3Unavailable(ProvisioningError):
    """The S3 server could not be reached."""

    def __init__(self, message: str):
        super().__init__(message, "Unavailable")


# ---- pure naming and policy ------------------------------------------------------------------------------------

def split_tenant(tenant: str) -> tuple[str, str]:
    """"<namespace>/<app>" → (namespace, app); a bare namespace means app "default"."""
    namespace, _, app = tenant.partition("/")
    app = app or "default"
    if not namespace or "/" in app:
        raise ValueError(f"tenant must be '<namespace>/<app>', got {tenant!r}")
    return namespace, app


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def bucket_name(tenant: str, prefix: str = "mpc-") -> str:
    """A DNS-safe S3 bucket name (3–63 of [a-z0-9-], starting and ending alphanumeric), unique per tenant."""
    namespace, app = split_tenant(tenant)
    suffix = "-" + _short_hash(f"{namespace}/{app}")
    stem = _slug(f"{prefix}{namespace}-{app}")[: 63 - len(suffix)].rstrip("-")
    name = (stem or "mpc") + suffix
    if not name[0].isalnum():
        name = "b" + name[1:]
    return name


def identity_name(tenant: str, function: str) -> str:
    """The IAM user name of a function ([A-Za-z0-9.-], at most 64 characters, unique per tenant and function)."""
    namespace, app = split_tenant(tenant)
    if not function:
        raise ValueError("function name must not be empty")
    suffix = "." + _short_hash(f"{namespace}/{app}/{function}")
    stem = re.sub(r"[^A-Za-z0-9.-]", "-", f"cf.{namespace}.{app}.{function}")[: 64 - len(suffix)]
    return stem + suffix


def policy_document(bucket: str, access: Access) -> dict:
    """The one inline policy of a function's identity: its bucket only."""
    if access not in ("read", "readWrite"):
        raise ValueError(f"access must be 'read' or 'readWrite', got {access!r}")
    objects = f"arn:aws:s3:::{bucket}/*"
    statements = [
        {"Sid": "ReadObjects", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [objects]},
        {"Sid": "ListBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
    ]
    if access == "readWrite":
        statements.append({"Sid": "WriteObjects", "Effect": "Allow",
                           "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                           "Resource": [objects]})
    return {"Version": "2012-10-17", "Statement": statements}


def canonical_policy(doc: dict | None) -> list[tuple] | None:
    """A policy in a form that compares equal however a server re-serialises it (a one-item list as a string,
    statement or action order)."""
    if not doc:
        return None

    def items(value: object) -> tuple[str, ...]:
        return tuple(sorted([value] if isinstance(value, str) else list(value or [])))

    return sorted((st.get("Sid", ""), st.get("Effect", ""), items(st.get("Action")), items(st.get("Resource")))
                  for st in doc.get("Statement", []))


def secret_fingerprint(access_key: str, secret_key: str) -> str:
    """Kept as a user tag so a changed secret for the same key id is noticed (IAM never returns secrets)."""
    return hashlib.sha256(f"{access_key}\x00{secret_key}".encode()).hexdigest()[:32]


def split_endpoint(endpoint: str) -> tuple[str, bool]:
    """"http://host:port" or "host:port" → ("host:port", secure)."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), False
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"S3 endpoint must be http(s)://host:port, got {endpoint!r}")
    return parts.netloc, parts.scheme == "https"


# ---- IAM query API ---------------------------------------------------------------------------------------------

def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        el.tag = _IAM_NS.sub("", el.tag)
    return root


@dataclass
class IamClient:
    """AWS IAM query API calls (form POST, SigV4) against an S3 server's embedded IAM endpoint."""

    url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(3.0, self.timeout), read=self.timeout),
                                         retries=False)

    def call(self, action: str, **params: str) -> ET.Element:
        body = urlencode({"Action": action, "Version": IAM_VERSION, **params}).encode()
        headers = sigv4.sign("POST", self.url, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                             body, access_key=self.access_key, secret_key=self.secret_key, region=self.region,
                             service="iam")
        try:
            resp = self._http.request("POST", self.url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise S3Unavailable(f"S3 server at {self.url} is unreachable ({action}): {exc}") from exc
        try:
            root = _strip_ns(ET.fromstring(resp.data or b"<empty/>"))
        except ET.ParseError:
            root = ET.Element("unparsed")
        if resp.status >= 400:
            code = root.findtext(".//Error/Code") or root.findtext(".//Code") or f"HTTP{resp.status}"
            message = root.findtext(".//Error/Message") or root.findtext(".//Message") or resp.data[:200].decode(
                errors="replace")
            if resp.status >= 500 and code.startswith("HTTP"):
                raise S3Unavailable(f"S3 server at {self.url} answered {resp.status} to {action}: {message}")
            raise ProvisioningError(f"IAM {action} refused: {code}: {message}", code)
        return root


# ---- the provisioner -------------------------------------------------------------------------------------------

class FileProvisioner:
    """Buckets and function identities on one S3 server, with its admin key."""

    def __init__(self, endpoint: str, admin_access_key: str, admin_secret_key: str, *, region: str = "us-east-1",
                 bucket_prefix: str = "mpc-", timeout: float = 10.0):
        host, secure = split_endpoint(endpoint)
        self.endpoint = f"{'https' if secure else 'http'}://{host}"
        self.region = region
        self.bucket_prefix = bucket_prefix
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(3.0, timeout), read=timeout),
                                   retries=urllib3.Retry(total=1, connect=0, backoff_factor=0.2,
                                                         status_forcelist=[502, 503, 504]))
        self._s3 = Minio(host, access_key=admin_access_key, secret_key=admin_secret_key, secure=secure,
                         region=region, http_client=http)
        self.iam = IamClient(self.endpoint + "/", admin_access_key, admin_secret_key, region, timeout)

    def bucket(self, tenant: str) -> str:
        return bucket_name(tenant, self.bucket_prefix)

    def ensure_bucket(self, tenant: str) -> str:
        """Create the tenant's bucket if it is missing; returns its name."""
        name = self.bucket(tenant)
        try:
            if not self._s3.bucket_exists(name):
                self._s3.make_bucket(name)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ProvisioningError(f"creating bucket {name} failed: {exc.code}: {exc.message}", exc.code) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise S3Unavailable(f"S3 server at {self.endpoint} is unreachable (bucket {name}): {exc}") from exc
        return name

    def ensure_identity(self, tenant: str, function: str, access: Access, access_key: str, secret_key: str) -> str:
        """The function's identity holds exactly `access_key` and a policy for `access` on its tenant's bucket,
        and is tagged with its function. Returns the identity's name. A key used by another identity is
        refused (EntityAlreadyExists)."""
        user = identity_name(tenant, function)
        namespace, app = split_tenant(tenant)
        owner_tags = {"mpcloud-namespace": namespace, "mpcloud-app": app, "mpcloud-function": function}
        wanted_policy = policy_document(self.bucket(tenant), access)
        fingerprint = secret_fingerprint(access_key, secret_key)
        try:
            self.iam.call("GetUser", UserName=user)
        except ProvisioningError as exc:
            if exc.code != "NoSuchEntity":
                raise
            self._create_user(user)
        keys = self._access_keys(user)
        tags = self._tags(user)
        stale_secret = access_key in keys and tags.get("mpcloud-credential") != fingerprint
        for key in keys:
            if key != access_key or stale_secret:
                self.iam.call("DeleteAccessKey", UserName=user, AccessKeyId=key)
        if access_key not in keys or stale_secret:
            self.iam.call("CreateAccessKey", UserName=user, AccessKeyId=access_key, SecretAccessKey=secret_key)
        # All tags in one call (servers differ on whether TagUser merges or replaces).
        wanted_tags = {**owner_tags, "mpcloud-credential": fingerprint}
        if any(tags.get(k) != v for k, v in wanted_tags.items()):
            self.iam.call("TagUser", UserName=user, **{f"Tags.member.{i}.{part}": value
                                                       for i, (k, v) in enumerate(sorted(wanted_tags.items()), 1)
                                                       for part, value in (("Key", k), ("Value", v))})
        if canonical_policy(self._policy(user)) != canonical_policy(wanted_policy):
            self.iam.call("PutUserPolicy", UserName=user, PolicyName=POLICY_NAME,
                          PolicyDocument=json.dumps(wanted_policy, separators=(",", ":")))
        return user

    def drop_identity(self, tenant: str, function: str) -> bool:
        """Remove the function's identity (its keys stop working at once). False if there was none."""
        user = identity_name(tenant, function)
        try:
            for key in self._access_keys(user):
                self.iam.call("DeleteAccessKey", UserName=user, AccessKeyId=key)
            self.iam.call("DeleteUser", UserName=user)
        except ProvisioningError as exc:
            if exc.code == "NoSuchEntity":
                return False
            raise
        return True

    def function_identities(self) -> list[tuple[str, dict[str, str]]]:
        """Every function identity that names its function: (user, {namespace, app, function}). Users are
        listed once; tags are read only for those named like a function's ("cf.")."""
        users, marker = [], ""
        while True:
            root = self.iam.call("ListUsers", **({"Marker": marker} if marker else {}))
            users += [el.text or "" for el in root.iter("UserName")]
            marker = root.findtext(".//Marker") or ""
            if (root.findtext(".//IsTruncated") or "false").lower() != "true" or not marker:
                break
        out = []
        for user in sorted(set(users)):
            if not user.startswith("cf."):
                continue
            try:
                tags = self._tags(user)
            except ProvisioningError as exc:
                if exc.code == "NoSuchEntity":  # deleted meanwhile
                    continue
                raise
            owner = {k: tags.get(f"mpcloud-{k}") for k in ("namespace", "app", "function")}
            if all(owner.values()):
                out.append((user, owner))
        return out

    def _create_user(self, user: str) -> None:
        try:
            self.iam.call("CreateUser", UserName=user)
        except ProvisioningError as exc:
            if exc.code != "EntityAlreadyExists":  # a concurrent reconcile made it
                raise

    def _access_keys(self, user: str) -> list[str]:
        root = self.iam.call("ListAccessKeys", UserName=user)
        return [el.text or "" for el in root.iter("AccessKeyId")]

    def _tags(self, user: str) -> dict[str, str]:
        root = self.iam.call("ListUserTags", UserName=user)
        return {m.findtext("Key") or "": m.findtext("Value") or "" for m in root.iter("member")
                if m.find("Key") is not None}

    def _policy(self, user: str) -> dict | None:
        try:
            root = self.iam.call("GetUserPolicy", UserName=user, PolicyName=POLICY_NAME)
        except ProvisioningError as exc:
            if exc.code == "NoSuchEntity":
                return None
            raise
        text = root.findtext(".//PolicyDocument") or ""
        try:  # AWS answers the document URL-encoded
            return json.loads(unquote(text))
        except ValueError:
            return None
