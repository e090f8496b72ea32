"""tls.mode=auto: the webhook keeps its own CA, serving certificate and caBundle.

One Secret (type kubernetes.io/tls) in the webhook's namespace is the single source of truth
shared by every replica:

    tls.crt, tls.key   the serving certificate and its key
    ca.crt             the CA bundle kube-apiserver trusts (the caBundle), signing CA first
    ca.key             the signing CA's key
    ca-next.key        only while a new CA is staged: its key (its certificate is in ca.crt)

Replicas never fight: the Secret is created with 409 handling (the loser adopts the winner's
CA), and every update carries the resourceVersion it was computed from (409: re-read, re-plan).
The CA is rotated in two steps so that no handshake ever fails: a new CA is first added to the
bundle (and the caBundle of every webhook entry), and only once kube-apiserver has been given
it, and after a grace period, does it start signing the serving certificate. The old CA stays in
the bundle until it expires. The serving certificate is renewed at two thirds of its lifetime;
the server picks up the rewritten files without a restart (webhook.tlsreload).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook import certs

log = logging.getLogger("logaas.tlsauto")

JSON = dict[str, Any]
CA_BUNDLE_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
NEXT_CA_KEY_KEY = "ca-next.key"
SECRET_TYPE = "kubernetes.io/tls"
MANAGED_BY = "logaas-webhook"


class TLSAutoError(RuntimeError):
    """tls.mode=auto cannot get a certificate: the message says what to check."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class TLSState:
    """What the Secret holds (PEM bytes)."""

    ca_bundle: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    next_ca_key: bytes | None = None

    def to_data(self) -> dict[str, str]:
        data = {
            certs.CERT_FILE: self.cert,
            certs.KEY_FILE: self.key,
            CA_BUNDLE_KEY: self.ca_bundle,
            CA_KEY_KEY: self.ca_key,
        }
        if self.next_ca_key:
            data[NEXT_CA_KEY_KEY] = self.next_ca_key
        return {k: base64.b64encode(v).decode() for k, v in data.items()}

    @classmethod
    def from_data(cls, data: dict[str, str] | None) -> TLSState | None:
        """None when a key is missing or not base64 (the Secret is then rebuilt)."""
        try:
            raw = {k: base64.b64decode(v, validate=True) for k, v in (data or {}).items()}
            return cls(
                ca_bundle=raw[CA_BUNDLE_KEY],
                ca_key=raw[CA_KEY_KEY],
                cert=raw[certs.CERT_FILE],
                key=raw[certs.KEY_FILE],
                next_ca_key=raw.get(NEXT_CA_KEY_KEY) or None,
            )
        except (KeyError, ValueError, TypeError):
            return None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _public(key: Any) -> bytes:
    raw: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return raw


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an ECDSA key")
    return key


def _owner(certificates: list[x509.Certificate], key_pem: bytes) -> x509.Certificate | None:
    public = _public(_load_key(key_pem).public_key())
    return next((c for c in certificates if _public(c.public_key()) == public), None)


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = ext.value.get_values_for_type(x509.DNSName)
    return names


def bundle_ders(pem: bytes) -> set[bytes]:
    """DER of each certificate in a PEM bundle (empty when it is not one)."""
    try:
        return {_der(c) for c in x509.load_pem_x509_certificates(pem)}
    except ValueError:
        return set()


@dataclass(frozen=True)
class Policy:
    """When to issue, renew and rotate. Defaults: a 10-year CA, 1-year serving certificates."""

    hosts: tuple[str, ...]
    ca_validity: dt.timedelta = certs.CA_VALIDITY
    serving_validity: dt.timedelta = certs.SERVING_VALIDITY
    # Renew at two thirds of the lifetime.
    ca_renew_before: dt.timedelta | None = None
    serving_renew_before: dt.timedelta | None = None
    # How long a staged CA is in the caBundle before it signs (kube-apiserver must have it).
    promote_after: dt.timedelta = dt.timedelta(minutes=5)
    ca_name: str = "logaas-webhook-ca"

    @property
    def ca_renew(self) -> dt.timedelta:
        return self.ca_renew_before or self.ca_validity / 3

    @property
    def serving_renew(self) -> dt.timedelta:
        return self.serving_renew_before or self.serving_validity / 3


def _new_ca(policy: Policy, now: dt.datetime) -> tuple[bytes, bytes]:
    return certs.generate_ca(f"{policy.ca_name}@{int(now.timestamp())}", policy.ca_validity)


def _issue(policy: Policy, ca_cert: bytes, ca_key: bytes) -> tuple[bytes, bytes]:
    return certs.issue_serving(ca_cert, ca_key, list(policy.hosts), policy.serving_validity)


def fresh_state(policy: Policy, now: dt.datetime) -> TLSState:
    ca_cert, ca_key = _new_ca(policy, now)
    cert, key = _issue(policy, ca_cert, ca_key)
    return TLSState(ca_bundle=ca_cert, ca_key=ca_key, cert=cert, key=key)


def plan(
    state: TLSState | None,
    policy: Policy,
    now: dt.datetime,
    published: set[bytes] | None = None,
) -> tuple[TLSState | None, str]:
    """The state the Secret should move to (None: keep it) and why.

    published: DER of the CA certificates every webhook entry's caBundle already holds (None
    when unknown); a staged CA only starts signing once it is published and promote_after has
    passed, or, failing that, when the old CA has less than half its renewal window left.
    """
    if state is None:
        return fresh_state(policy, now), "no usable certificate yet: new CA and certificate"
    try:
        bundle = x509.load_pem_x509_certificates(state.ca_bundle)
        signer = _owner(bundle, state.ca_key)
        staged = _owner(bundle, state.next_ca_key) if state.next_ca_key else None
        serving = x509.load_pem_x509_certificate(state.cert)
        serving_key = _load_key(state.key)
    except ValueError as err:
        return fresh_state(policy, now), f"stored certificates are unusable ({err}): starting over"
    if signer is None or signer.not_valid_after_utc <= now:
        return fresh_state(policy, now), "the signing CA is missing or expired: starting over"
    reasons: list[str] = []
    reissue = False
    # Expired CAs leave the bundle (the signer and a staged CA always stay).
    kept = [c for c in bundle if c.not_valid_after_utc > now or c in (signer, staged)]
    if len(kept) != len(bundle):
        reasons.append(f"dropped {len(bundle) - len(kept)} expired CA(s) from the bundle")
    ca_key = state.ca_key
    next_key = state.next_ca_key if staged is not None else None
    if state.next_ca_key and staged is None:
        reasons.append("dropped a staged CA key without its certificate")
    remaining = signer.not_valid_after_utc - now
    if staged is None and remaining < policy.ca_renew:
        ca_cert, next_key = _new_ca(policy, now)
        staged = x509.load_pem_x509_certificate(ca_cert)
        kept.append(staged)
        reasons.append(f"CA expires in {remaining}: staged a new CA in the bundle")
    elif staged is not None and next_key is not None:
        # generate_ca backdates notBefore by 5 minutes.
        age = now - (staged.not_valid_before_utc + dt.timedelta(minutes=5))
        is_published = published is not None and _der(staged) in published
        if (is_published and age >= policy.promote_after) or remaining < policy.ca_renew / 2:
            kept = [staged, *(c for c in kept if c is not staged)]
            signer, ca_key, next_key, staged = staged, next_key, None, None
            reissue = True
            reasons.append("the new CA is in the caBundle: it signs from now on")
    if signer is not kept[0]:
        kept = [signer, *(c for c in kept if c is not signer)]
    # The serving certificate.
    cert, key = state.cert, state.key
    signer_pem = signer.public_bytes(serialization.Encoding.PEM)
    if not reissue:
        problem = _serving_problem(serving, serving_key, signer, policy, now)
        if problem:
            reissue = True
            reasons.append(problem)
    if reissue:
        cert, key = _issue(policy, signer_pem, ca_key)
    new = TLSState(
        ca_bundle=_pem(kept), ca_key=ca_key, cert=cert, key=key, next_ca_key=next_key or None
    )
    if new == state:
        return None, "up to date"
    return new, "; ".join(reasons) or "normalized the bundle"


def _serving_problem(
    serving: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    signer: x509.Certificate,
    policy: Policy,
    now: dt.datetime,
) -> str | None:
    if _public(serving.public_key()) != _public(key.public_key()):
        return "the serving key does not match its certificate: reissued"
    try:
        serving.verify_directly_issued_by(signer)
    except (InvalidSignature, ValueError, TypeError):
        return "the serving certificate is not signed by the current CA: reissued"
    if sorted(_dns_names(serving)) != sorted(policy.hosts):
        return "the serving certificate is for other host names: reissued"
    remaining = serving.not_valid_after_utc - now
    if remaining < policy.serving_renew:
        # A certificate capped by the CA's expiry cannot be extended: do not churn.
        headroom = signer.not_valid_after_utc - serving.not_valid_after_utc
        if remaining <= dt.timedelta(0) or headroom > dt.timedelta(minutes=1):
            return f"the serving certificate expires in {remaining}: renewed"
    return None


class _Writer:
    """Every write of AutoTLS carries its field manager."""

    def __init__(self, rest: Any) -> None:
        self.rest = rest

    def request(self, method: str, path: str, body: Any = None, content_type: str = "") -> JSON:
        query = [("fieldManager", MANAGED_BY)] if method != "GET" else []
        result: JSON = self.rest.request(
            method, path, query, body, content_type or "application/json"
        )
        return result


def _status(err: BaseException) -> int | None:
    status = getattr(err, "status", None)
    return status if isinstance(status, int) else None


class AutoTLS:
    """Keeps the Secret, the files in cert_dir and the caBundle of the webhook config current."""

    def __init__(
        self,
        namespace: str,
        secret_name: str,
        webhook_config: str,
        service: str,
        cert_dir: Path,
        *,
        api_client: Any = None,
        kubeconfig: str | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        interval: float = 60.0,
        max_backoff: float = 300.0,
        startup_timeout: float = 90.0,
        request_timeout: float = 15.0,
        ca_validity: dt.timedelta = certs.CA_VALIDITY,
        serving_validity: dt.timedelta = certs.SERVING_VALIDITY,
        promote_after: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.namespace = namespace
        self.secret_name = secret_name
        self.webhook_config = webhook_config
        self.cert_dir = Path(cert_dir)
        self.policy = Policy(
            hosts=tuple(certs.service_hosts(service, namespace)),
            ca_validity=ca_validity,
            serving_validity=serving_validity,
            promote_after=promote_after,
            ca_name=f"{service}-ca",
        )
        self.clock = clock
        self.interval = interval
        self.max_backoff = max_backoff
        self.startup_timeout = startup_timeout
        self._api_client = api_client
        self._kubeconfig = kubeconfig
        self._request_timeout = request_timeout
        self._kube: _Writer | None = None
        self._lock = threading.Lock()
        self._state: TLSState | None = None
        self.not_after: dt.datetime | None = None  # serving certificate expiry, for metrics
        self.ca_bundle_synced = False
        self.last_error: str | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def _secret_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets"

    @property
    def _webhook_path(self) -> str:
        return (
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
            f"{self.webhook_config}"
        )

    def _api(self) -> _Writer:
        if self._kube is None:
            from webhook.kubeclient import RestClient, api_client

            api = self._api_client or api_client(self._kubeconfig)
            self._kube = _Writer(RestClient(api, self._request_timeout))
        return self._kube

    # -- one reconciliation -------------------------------------------------------------------

    def sync(self) -> bool:
        """Bring Secret, files and caBundle up to date. True when the caBundle is current too.

        Secret errors raise (without a certificate the server cannot start); a missing or
        unpatchable webhook configuration is logged and reported as False.
        """
        with self._lock:
            config = self._read_webhook_config()
            published = _published(config) if config is not None else None
            state = self._sync_secret(published)
            self._write_files(state)
            self._state = state
            self.not_after = certs.not_after(state.cert)
            synced = config is not None and self._patch_ca_bundle(config, state.ca_bundle)
            self.ca_bundle_synced = synced
            return synced

    def _read_webhook_config(self) -> JSON | None:
        try:
            return self._api().request("GET", self._webhook_path)
        except Exception as err:
            if _status(err) is None:
                raise
            self.last_error = (
                f"cannot read MutatingWebhookConfiguration {self.webhook_config}: "
                f"HTTP {_status(err)}"
            )
            log.warning("tls auto: %s; the caBundle is not patched yet", self.last_error)
            return None

    def _sync_secret(self, published: set[bytes] | None) -> TLSState:
        kube = self._api()
        for _ in range(8):
            try:
                secret: JSON | None = kube.request("GET", f"{self._secret_path}/{self.secret_name}")
            except Exception as err:
                if _status(err) != 404:
                    raise
                secret = None
            current = TLSState.from_data(secret.get("data")) if secret else None
            desired, why = plan(current, self.policy, self.clock(), published)
            if desired is None:
                assert current is not None
                return current
            try:
                if secret is None:
                    kube.request("POST", self._secret_path, self._secret_body(desired, None))
                    log.info("tls auto: created Secret %s (%s)", self.secret_name, why)
                else:
                    kube.request(
                        "PUT",
                        f"{self._secret_path}/{self.secret_name}",
                        self._secret_body(desired, secret),
                    )
                    log.info("tls auto: updated Secret %s (%s)", self.secret_name, why)
                return desired
            except Exception as err:
                # 409: another replica created or updated it first; adopt its result.
                if _status(err) != 409:
                    raise
                log.info("tls auto: Secret %s changed concurrently; re-reading", self.secret_name)
        raise TLSAutoError(f"Secret {self.secret_name} keeps changing under us (8 conflicts)")

    def _secret_body(self, state: TLSState, existing: JSON | None) -> JSON:
        meta: JSON = {
            "name": self.secret_name,
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/component": "webhook-tls",
            },
        }
        secret_type = SECRET_TYPE
        if existing is not None:
            old_meta = existing.get("metadata") or {}
            meta["resourceVersion"] = old_meta.get("resourceVersion")
            meta["labels"] = {**(old_meta.get("labels") or {}), **meta["labels"]}
            for field in ("annotations", "ownerReferences"):
                if old_meta.get(field):
                    meta[field] = old_meta[field]
            secret_type = existing.get("type") or SECRET_TYPE  # immutable
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": secret_type,
            "data": state.to_data(),
        }

    def _write_files(self, state: TLSState) -> None:
        wanted = {
            certs.CA_FILE: state.ca_bundle,
            certs.CERT_FILE: state.cert,
            certs.KEY_FILE: state.key,
        }
        current = {}
        for name in wanted:
            try:
                current[name] = (self.cert_dir / name).read_bytes()
            except OSError:
                current[name] = b""
        if current == wanted:
            return
        certs.write_bundle(
            certs.CertBundle(ca_cert=state.ca_bundle, cert=state.cert, key=state.key),
            self.cert_dir,
        )
        log.info(
            "tls auto: wrote %s (serving certificate valid until %s)",
            self.cert_dir,
            certs.not_after(state.cert).isoformat(),
        )

    def _patch_ca_bundle(self, config: JSON, bundle: bytes) -> bool:
        encoded = base64.b64encode(bundle).decode()
        ops: list[JSON] = []
        for index, hook in enumerate(config.get("webhooks") or []):
            if (hook.get("clientConfig") or {}).get("caBundle") == encoded:
                continue
            ops += [
                {"op": "test", "path": f"/webhooks/{index}/name", "value": hook.get("name")},
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded},
            ]
        if not ops:
            return True
        rv = (config.get("metadata") or {}).get("resourceVersion")
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": rv})
        try:
            self._api().request("PATCH", self._webhook_path, ops, "application/json-patch+json")
        except Exception as err:
            if _status(err) is None:
                raise
            # 409/422 (a test op failed: the config changed meanwhile) or RBAC: retried later.
            self.last_error = (
                f"cannot patch the caBundle of {self.webhook_config}: HTTP {_status(err)}"
            )
            log.warning("tls auto: %s", self.last_error)
            return False
        log.info(
            "tls auto: caBundle of %s updated (%d entries)", self.webhook_config, len(ops) // 2
        )
        return True

    # -- start-up and the background loop ---------------------------------------------------

    def ensure(self) -> None:
        """Block until the certificate files exist in cert_dir (the caBundle may follow).

        Retries API errors with backoff for startup_timeout seconds; RBAC refusals fail at once.
        """
        deadline = time.monotonic() + self.startup_timeout
        delay = 1.0
        while True:
            try:
                self.sync()
                self.last_error = None if self.ca_bundle_synced else self.last_error
                return
            except TLSAutoError:
                raise
            except Exception as err:
                status = _status(err)
                if status in (401, 403):
                    raise TLSAutoError(
                        f"tls.mode=auto: the API server refused access to Secret "
                        f"{self.namespace}/{self.secret_name} (HTTP {status}): the webhook's "
                        "Role must allow get, update and create on it"
                    ) from None
                what = f"HTTP {status}" if status else f"{type(err).__name__}: {err}"
                self.last_error = f"cannot sync Secret {self.namespace}/{self.secret_name}: {what}"
            if time.monotonic() + delay > deadline:
                raise TLSAutoError(
                    f"tls.mode=auto: no certificate after {self.startup_timeout:.0f}s: "
                    f"{self.last_error}"
                )
            log.warning("tls auto: %s; retrying in %.0fs", self.last_error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def start(self, stop_event: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self._run, args=(stop_event,), name="tls-auto", daemon=True
        )
        thread.start()
        return thread

    def _run(self, stop: threading.Event) -> None:
        failures = 0 if self.ca_bundle_synced else 1  # a caBundle left to patch: retry soon
        delay = self._next_delay(failures)
        while not stop.wait(delay):
            try:
                synced = self.sync()
                failures = 0 if synced else failures + 1
            except Exception as err:
                failures += 1
                status = _status(err)
                self.last_error = f"HTTP {status}" if status else f"{type(err).__name__}: {err}"
                log.warning("tls auto: sync failed (%s); backing off", self.last_error)
            delay = self._next_delay(failures)

    def _next_delay(self, failures: int) -> float:
        if failures:
            base = min(self.max_backoff, 2.0 ** min(failures, 16))
        else:
            base = self.interval
        return base * random.uniform(0.8, 1.0)  # replicas drift apart instead of colliding


def _published(config: JSON) -> set[bytes]:
    """The CA certificates (DER) that every webhook entry's caBundle holds."""
    sets = []
    for hook in config.get("webhooks") or []:
        encoded = (hook.get("clientConfig") or {}).get("caBundle") or ""
        try:
            sets.append(bundle_ders(base64.b64decode(encoded)))
        except ValueError:
            sets.append(set())
    return set.intersection(*sets) if sets else set()


__all__ = ["AutoTLS", "Policy", "TLSAutoError", "TLSState", "bundle_ders", "plan"]
