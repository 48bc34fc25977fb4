"""TLS for the admission webhooks: a private CA and a short-lived serving certificate, kept in one Secret.

Every replica serves the webhooks, so they all need the same CA (the webhook configuration's caBundle): the
first replica creates the Secret `<name>` in the operator's namespace (create is atomic: a loser reads the
winner's), the others read it. The serving certificate is renewed when a third of its lifetime is left (by
whichever replica notices first: an update with the read resourceVersion, so concurrent renewals cannot
both win); the CA is renewed the same way, and during its overlap the caBundle holds old and new CA, so a
replica still serving a certificate of the old CA is trusted until it picks up the new one.

The pure parts (issue, needs_renewal, renewed) are unit-tested; `CertStore` does the Secret round-trips.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import os
import tempfile
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpcloud_operator.kube.client import ApiException, KubeClient

log = logging.getLogger("mpcloud.risk.certs")

CA_DAYS = 3650
CERT_DAYS = 90
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt")


@dataclass(frozen=True)
class Bundle:
    """PEM texts: the CA (cert + key), the serving cert + key, and the caBundle (current CA, maybe the previous)."""

    ca_crt: bytes
    ca_key: bytes
    tls_crt: bytes
    tls_key: bytes
    ca_bundle: bytes

    def as_data(self) -> dict[str, str]:
        return {k: base64.b64encode(v).decode() for k, v in zip(KEYS, (self.ca_crt, self.ca_key, self.tls_crt,
                                                                        self.tls_key, self.ca_bundle))}

    @classmethod
    def from_data(cls, data: dict[str, str]) -> Bundle:
        return cls(*(base64.b64decode(data[k]) for k in KEYS))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(now: dt.datetime, lifetime: dt.timedelta = dt.timedelta(days=CA_DAYS)) -> tuple[bytes, bytes]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mpcloud-risk-webhook-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue(ca_crt: bytes, ca_key: bytes, hostnames: list[str], now: dt.datetime,
          lifetime: dt.timedelta = dt.timedelta(days=CERT_DAYS)) -> tuple[bytes, bytes]:
    """A serving certificate for `hostnames` (DNS names or IP addresses) signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_crt)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    key = _key()
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(hostnames):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + lifetime)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(signer, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _validity(pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _past_two_thirds(pem: bytes, now: dt.datetime) -> bool:
    start, end = _validity(pem)
    return now >= end - (end - start) / 3


def _sans(pem: bytes) -> set[str]:
    ext = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def needs_renewal(bundle: Bundle, hostnames: list[str], now: dt.datetime) -> bool:
    return (_past_two_thirds(bundle.ca_crt, now) or _past_two_thirds(bundle.tls_crt, now)
            or not set(hostnames) <= _sans(bundle.tls_crt))


def fresh(hostnames: list[str], now: dt.datetime, cert_lifetime: dt.timedelta) -> Bundle:
    ca_crt, ca_key = new_ca(now)
    crt, key = issue(ca_crt, ca_key, hostnames, now, cert_lifetime)
    return Bundle(ca_crt, ca_key, crt, key, ca_crt)


def renewed(bundle: Bundle, hostnames: list[str], now: dt.datetime, cert_lifetime: dt.timedelta) -> Bundle:
    """A new serving certificate; a new CA too when the old one is past two thirds (the bundle keeps both)."""
    ca_crt, ca_key, ca_bundle = bundle.ca_crt, bundle.ca_key, bundle.ca_bundle
    if _past_two_thirds(ca_crt, now):
        ca_crt, ca_key = new_ca(now)
        ca_bundle = ca_crt + bundle.ca_crt
    crt, key = issue(ca_crt, ca_key, hostnames, now, cert_lifetime)
    return Bundle(ca_crt, ca_key, crt, key, ca_bundle)


class CertStore:
    """The webhook TLS Secret, and the files the webhook server loads (it re-reads them when they change)."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, hostnames: list[str], directory: str,
                 cert_lifetime: dt.timedelta = dt.timedelta(days=CERT_DAYS)) -> None:
        self.kube, self.namespace, self.name, self.hostnames = kube, namespace, name, hostnames
        self.directory, self.cert_lifetime = directory, cert_lifetime
        self.bundle: Bundle | None = None
        self._ensure_lock = threading.RLock()

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    def certfile(self) -> str:
        return os.path.join(self.directory, "tls.crt")

    def keyfile(self) -> str:
        return os.path.join(self.directory, "tls.key")

    def _get(self) -> dict | None:
        try:
            return self.kube.request("GET", self.path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def ensure(self, now: dt.datetime | None = None) -> bool:
        """Read (create or renew if needed) the Secret and write the files; True when the bundle changed."""
        # The start-up thread and the upkeep loop both call this: one at a time, or a reader could load the key
        # of one bundle with the certificate of another.
        with self._ensure_lock:
            return self._ensure(now or dt.datetime.now(dt.timezone.utc))

    def _ensure(self, now: dt.datetime) -> bool:
        secret = self._get()
        if secret is None:
            bundle = fresh(self.hostnames, now, self.cert_lifetime)
            body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "mpcloud"}},
                    "data": bundle.as_data()}
            try:
                self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/secrets", body=body)
                log.info("created webhook TLS secret %s/%s", self.namespace, self.name)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                return self._ensure(now)  # another replica won: use its CA
        else:
            bundle = Bundle.from_data(secret.get("data") or {})
            if needs_renewal(bundle, self.hostnames, now):
                bundle = renewed(bundle, self.hostnames, now, self.cert_lifetime)
                secret["data"] = bundle.as_data()
                try:  # the resourceVersion we read makes a concurrent renewal fail with 409
                    self.kube.request("PUT", self.path, body=secret)
                    log.info("renewed the webhook serving certificate (valid until %s)", _validity(bundle.tls_crt)[1])
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    return self._ensure(now)
        changed = bundle != self.bundle
        if changed:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            for path, data in ((self.keyfile(), bundle.tls_key), (self.certfile(), bundle.tls_crt)):
                fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tls-")  # mode 0600
                with open(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            self.bundle = bundle
        return changed
