"""tls.mode=auto against an HTTP-level fake Kubernetes API, driven by the real kubernetes client.

The MutatingWebhookConfiguration in the fake is the one the chart renders (real helm), so the
caBundle is patched on exactly the entries users get. Certificates are checked by effect: a
real TLS handshake verified with the published caBundle for the Service's DNS name.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fakekube import FakeKube
from tests.test_chart import CHART, REQUIRED, helm, rbac_allows
from webhook import certs
from webhook.tlsauto import AutoTLS, Policy, TLSAutoError, TLSState, plan

NAMESPACE = "logaas"
SERVICE = "logaas-webhook"
SECRET = "logaas-webhook-tls"
CONFIG = "logaas-webhook"
HOST = f"{SERVICE}.{NAMESPACE}.svc"
MWC_API = "admissionregistration.k8s.io/v1"
MWC = "mutatingwebhookconfigurations"


@pytest.fixture(scope="module")
def chart_webhook_config() -> dict[str, Any]:
    proc = subprocess.run(
        [helm(), "template", "logaas-webhook", str(CHART), "-n", NAMESPACE,
         *[a for item in REQUIRED for a in ("--set", item)],
         "--show-only", "templates/mutatingwebhook.yaml"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    assert config["metadata"]["name"] == CONFIG
    assert len(config["webhooks"]) == 2
    return config


@pytest.fixture
def kube(chart_webhook_config: dict[str, Any]) -> Iterator[FakeKube]:
    with FakeKube() as fake:
        fake.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        fake.put(chart_webhook_config)
        yield fake


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def make(kube: FakeKube, cert_dir: Path, **kwargs: Any) -> AutoTLS:
    return AutoTLS(
        namespace=NAMESPACE,
        secret_name=SECRET,
        webhook_config=CONFIG,
        service=SERVICE,
        cert_dir=cert_dir,
        api_client=kube.api_client(),
        **kwargs,
    )


def secret_state(kube: FakeKube) -> TLSState:
    secret = kube.get("v1", "secrets", NAMESPACE, SECRET)
    assert secret is not None
    state = TLSState.from_data(secret["data"])
    assert state is not None
    return state


def published_bundles(kube: FakeKube) -> list[bytes]:
    config = kube.get(MWC_API, MWC, None, CONFIG)
    assert config is not None
    return [base64.b64decode(w["clientConfig"]["caBundle"]) for w in config["webhooks"]]


def ca_subjects(pem: bytes) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem)]


def issuer_of(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).issuer.rfc4514_string()


def handshake(ca_pem: bytes, cert_dir: Path, hostname: str = HOST) -> None:
    """A TLS handshake to a server using cert_dir's files, verified as kube-apiserver does."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_dir / certs.CERT_FILE, cert_dir / certs.KEY_FILE)
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as err:
            errors.append(err)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    finally:
        thread.join(5)
    assert not errors, errors


def files(cert_dir: Path) -> dict[str, bytes]:
    return {
        n: (cert_dir / n).read_bytes() for n in (certs.CA_FILE, certs.CERT_FILE, certs.KEY_FILE)
    }


# --- start-up ----------------------------------------------------------------------------------


def test_secret_created_once_and_reused_on_restart(kube: FakeKube, tmp_path: Path) -> None:
    first = make(kube, tmp_path / "a")
    first.ensure()
    assert len(kube.requests_for("POST", "/secrets")) == 1
    secret = kube.get("v1", "secrets", NAMESPACE, SECRET)
    assert secret is not None
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "logaas-webhook"
    state = secret_state(kube)
    assert files(tmp_path / "a") == {
        "ca.crt": state.ca_bundle,
        "tls.crt": state.cert,
        "tls.key": state.key,
    }
    assert oct((tmp_path / "a" / "tls.key").stat().st_mode & 0o777) == "0o600"
    handshake(state.ca_bundle, tmp_path / "a")
    for host in certs.service_hosts(SERVICE, NAMESPACE):
        handshake(state.ca_bundle, tmp_path / "a", host)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(state.ca_bundle, tmp_path / "a", "other.logaas.svc")
    assert first.not_after == certs.not_after(state.cert)

    # A restart (or a second replica) adopts the Secret: no new CA, no write.
    kube.clear_requests()
    second = make(kube, tmp_path / "b")
    second.ensure()
    assert kube.requests_for("POST") == [] and kube.requests_for("PUT") == []
    assert kube.requests_for("PATCH") == []  # the caBundle is already current
    assert files(tmp_path / "b") == files(tmp_path / "a")


def test_ca_bundle_patched_on_both_entries(kube: FakeKube, tmp_path: Path) -> None:
    auto = make(kube, tmp_path)
    auto.ensure()
    assert auto.ca_bundle_synced
    state = secret_state(kube)
    assert published_bundles(kube) == [state.ca_bundle, state.ca_bundle]
    config = kube.get(MWC_API, MWC, None, CONFIG)
    assert config is not None
    # Only the caBundle changed: entries, selectors and policies are as the chart rendered them.
    assert [w["clientConfig"]["service"]["path"] for w in config["webhooks"]] == [
        "/mutate",
        "/mutate/namespace",
    ]
    assert [w["failurePolicy"] for w in config["webhooks"]] == ["Ignore", "Fail"]
    patches = kube.requests_for("PATCH", f"/{MWC}/{CONFIG}")
    assert len(patches) == 1
    assert patches[0].content_type == "application/json-patch+json"
    for bundle in published_bundles(kube):
        handshake(bundle, tmp_path)


def test_drifted_ca_bundle_is_patched_back(kube: FakeKube, tmp_path: Path) -> None:
    auto = make(kube, tmp_path)
    auto.ensure()
    config = kube.get(MWC_API, MWC, None, CONFIG)
    assert config is not None
    # e.g. `helm upgrade --force` or a person resets one entry.
    config["webhooks"][1]["clientConfig"]["caBundle"] = base64.b64encode(
        certs.generate_ca()[0]
    ).decode()
    kube.put(config)
    assert auto.sync() is True
    state = secret_state(kube)
    assert published_bundles(kube) == [state.ca_bundle, state.ca_bundle]


def test_missing_webhook_config_does_not_block_start_up(kube: FakeKube, tmp_path: Path) -> None:
    config = kube.get(MWC_API, MWC, None, CONFIG)
    assert config is not None
    kube.remove(MWC_API, MWC, None, CONFIG)
    auto = make(kube, tmp_path)
    auto.ensure()  # the server can start: its certificate files are there
    assert (tmp_path / "tls.crt").is_file()
    assert auto.ca_bundle_synced is False
    assert auto.last_error is not None and "404" in auto.last_error
    for hook in config["webhooks"]:
        hook["clientConfig"].pop("caBundle", None)
    kube.put(config)
    assert auto.sync() is True
    assert published_bundles(kube) == [secret_state(kube).ca_bundle] * 2


def test_transient_api_errors_are_retried_at_start_up(kube: FakeKube, tmp_path: Path) -> None:
    kube.fail_next(1, 500, method="GET", path_contains="/secrets/")
    auto = make(kube, tmp_path)
    auto.ensure()
    assert (tmp_path / "tls.crt").is_file()
    assert len(kube.requests_for("GET", f"/secrets/{SECRET}")) >= 2


def test_unreachable_api_gives_up_with_a_clear_message(kube: FakeKube, tmp_path: Path) -> None:
    kube.fail_next(100, 503, path_contains="/secrets")
    auto = make(kube, tmp_path, startup_timeout=2)
    with pytest.raises(TLSAutoError, match=r"no certificate after 2s: .*logaas-webhook-tls.*503"):
        auto.ensure()
    assert not (tmp_path / "tls.crt").exists()


def test_rbac_refusal_fails_fast_with_a_clear_message(kube: FakeKube, tmp_path: Path) -> None:
    kube.fail_next(10, 403, path_contains="/secrets")
    auto = make(kube, tmp_path, startup_timeout=60)
    with pytest.raises(TLSAutoError, match=r"HTTP 403.*Role must allow get, update and create"):
        auto.ensure()
    assert len(kube.requests_for("GET", f"/secrets/{SECRET}")) == 1  # no retrying


def test_unusable_secret_is_rebuilt(kube: FakeKube, tmp_path: Path) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NAMESPACE},
            "type": "Opaque",
            "data": {"tls.crt": base64.b64encode(b"garbage").decode()},
        }
    )
    auto = make(kube, tmp_path)
    auto.ensure()
    secret = kube.get("v1", "secrets", NAMESPACE, SECRET)
    assert secret is not None and secret["type"] == "Opaque"  # type is immutable: kept
    state = secret_state(kube)
    handshake(state.ca_bundle, tmp_path)


# --- rotation ----------------------------------------------------------------------------------


def test_serving_certificate_rotated_before_expiry(kube: FakeKube, tmp_path: Path) -> None:
    clock = Clock()
    auto = make(kube, tmp_path, clock=clock, serving_validity=dt.timedelta(days=30))
    auto.ensure()
    before = secret_state(kube)
    expiry = certs.not_after(before.cert)

    clock.offset = dt.timedelta(days=15)  # half its life: nothing to do
    auto.sync()
    assert secret_state(kube) == before
    assert kube.requests_for("PUT") == []

    clock.offset = dt.timedelta(days=21)  # past two thirds, still 9 days before expiry
    assert dt.datetime.now(dt.UTC) + clock.offset < expiry
    kube.clear_requests()
    auto.sync()
    after = secret_state(kube)
    assert after.cert != before.cert and after.key != before.key
    # (issued on the real clock: it ends when the old one would, plus the seconds since)
    assert certs.not_after(after.cert) >= expiry
    # Same CA: the caBundle does not change, kube-apiserver keeps trusting the new certificate.
    assert (after.ca_bundle, after.ca_key) == (before.ca_bundle, before.ca_key)
    assert kube.requests_for("PATCH") == []
    assert len(kube.requests_for("PUT", f"/secrets/{SECRET}")) == 1
    assert files(tmp_path)["tls.crt"] == after.cert
    assert auto.not_after == certs.not_after(after.cert)
    handshake(published_bundles(kube)[0], tmp_path)

    # A replica that still has the old files picks the new ones up from the Secret. (Back to the
    # real clock: certs issues on the real clock, so under the offset the new certificate would
    # already look two thirds old.)
    clock.offset = dt.timedelta(0)
    other = tmp_path / "other"
    certs.write_bundle(
        certs.CertBundle(ca_cert=before.ca_bundle, cert=before.cert, key=before.key), other
    )
    make(kube, other, clock=clock, serving_validity=dt.timedelta(days=30)).sync()
    assert files(other) == files(tmp_path)


def test_ca_rotation_publishes_the_new_ca_before_it_signs(kube: FakeKube, tmp_path: Path) -> None:
    clock = Clock()
    auto = make(kube, tmp_path, clock=clock, ca_validity=dt.timedelta(days=300))
    auto.ensure()
    old = secret_state(kube)
    old_ca = ca_subjects(old.ca_bundle)
    assert len(old_ca) == 1

    # Past two thirds of the CA's life: a new CA is staged in the bundle and published, but the
    # serving certificate is still signed by the old one (kube-apiserver may not have it yet).
    clock.offset = dt.timedelta(days=210)
    auto.sync()
    staged = secret_state(kube)
    bundle = ca_subjects(staged.ca_bundle)
    assert len(bundle) == 2 and bundle[0] == old_ca[0]
    assert staged.next_ca_key is not None and staged.ca_key == old.ca_key
    assert issuer_of(staged.cert) == old_ca[0]
    assert published_bundles(kube) == [staged.ca_bundle] * 2
    handshake(staged.ca_bundle, tmp_path)

    # Next round: the new CA is in every entry's caBundle, so it starts signing. The old CA
    # stays in the bundle, so certificates it signed (other replicas' files) still verify.
    auto.sync()
    promoted = secret_state(kube)
    new_ca = bundle[1]
    assert ca_subjects(promoted.ca_bundle) == [new_ca, old_ca[0]]
    assert promoted.next_ca_key is None and promoted.ca_key == staged.next_ca_key
    assert issuer_of(promoted.cert) == new_ca
    handshake(staged.ca_bundle, tmp_path)  # what kube-apiserver had before this round
    handshake(promoted.ca_bundle, tmp_path)
    assert published_bundles(kube) == [promoted.ca_bundle] * 2


def test_staged_ca_waits_until_published(kube: FakeKube, tmp_path: Path) -> None:
    clock = Clock()
    auto = make(kube, tmp_path, clock=clock, ca_validity=dt.timedelta(days=300))
    auto.ensure()
    clock.offset = dt.timedelta(days=210)
    # The caBundle patch fails: the new CA is staged but must not sign yet.
    kube.fail_next(5, 500, method="PATCH")
    assert auto.sync() is False
    assert auto.sync() is False
    state = secret_state(kube)
    assert state.next_ca_key is not None
    assert issuer_of(state.cert) == ca_subjects(state.ca_bundle)[0]


# --- several replicas --------------------------------------------------------------------------


def _concurrently(actions: list[Callable[[], None]]) -> None:
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[], None]) -> None:
        barrier.wait()
        try:
            action()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


@pytest.mark.parametrize("replicas", [2, 4])
def test_concurrent_replicas_end_up_with_one_ca(
    kube: FakeKube, tmp_path: Path, replicas: int
) -> None:
    instances = [make(kube, tmp_path / str(i)) for i in range(replicas)]
    _concurrently([i.ensure for i in instances])
    state = secret_state(kube)
    assert len(ca_subjects(state.ca_bundle)) == 1
    for index in range(replicas):
        assert files(tmp_path / str(index)) == files(tmp_path / "0")
        assert files(tmp_path / str(index))["ca.crt"] == state.ca_bundle
    assert published_bundles(kube) == [state.ca_bundle] * 2
    assert len(kube.list("v1", "secrets", NAMESPACE)) == 1
    if replicas == 4:
        # The barrier makes them race: several create, the losers get 409 and adopt.
        assert len(kube.requests_for("POST", "/secrets")) >= 2
    # Every replica re-syncs: nothing changes any more.
    kube.clear_requests()
    for instance in instances:
        instance.sync()
    assert kube.requests_for("PUT") == [] and kube.requests_for("POST") == []


def test_concurrent_renewals_do_not_fight(kube: FakeKube, tmp_path: Path) -> None:
    clock = Clock()
    # promote_after is long: this round only stages (promotion is the next test's subject).
    instances = [
        make(
            kube,
            tmp_path / str(i),
            clock=clock,
            ca_validity=dt.timedelta(days=300),
            promote_after=dt.timedelta(days=10_000),
        )
        for i in range(3)
    ]
    instances[0].ensure()
    for instance in instances[1:]:
        instance.ensure()
    clock.offset = dt.timedelta(days=210)
    _concurrently([i.sync for i in instances])
    staged = secret_state(kube)
    # One new CA was staged, not one per replica; every replica serves what the Secret says.
    assert len(ca_subjects(staged.ca_bundle)) == 2
    for index in range(3):
        assert files(tmp_path / str(index)) == files(tmp_path / "0")
        assert files(tmp_path / str(index))["tls.crt"] == staged.cert


def test_update_conflict_rereads_and_adopts(kube: FakeKube, tmp_path: Path) -> None:
    clock = Clock()
    auto = make(kube, tmp_path, clock=clock, serving_validity=dt.timedelta(days=30))
    auto.ensure()
    before = secret_state(kube)
    clock.offset = dt.timedelta(days=21)
    kube.clear_requests()
    kube.fail_next(1, 409, method="PUT")
    auto.sync()
    assert len(kube.requests_for("PUT", f"/secrets/{SECRET}")) == 2
    assert len(kube.requests_for("GET", f"/secrets/{SECRET}")) == 2
    after = secret_state(kube)
    assert after.cert != before.cert and files(tmp_path)["tls.crt"] == after.cert


# --- the background loop -----------------------------------------------------------------------


def test_background_loop_repairs_drift_and_survives_api_errors(
    kube: FakeKube, tmp_path: Path
) -> None:
    auto = make(kube, tmp_path, interval=0.05, max_backoff=0.1)
    auto.ensure()
    stop = threading.Event()
    kube.fail_next(3, 503)
    thread = auto.start(stop)
    try:
        assert thread.daemon and thread.is_alive()
        config = kube.get(MWC_API, MWC, None, CONFIG)
        assert config is not None
        for hook in config["webhooks"]:
            hook["clientConfig"].pop("caBundle")
        kube.put(config)
        expected = [secret_state(kube).ca_bundle] * 2

        def repaired() -> bool:
            hooks = (kube.get(MWC_API, MWC, None, CONFIG) or {})["webhooks"]
            return all("caBundle" in h["clientConfig"] for h in hooks)

        assert kube.wait_for(repaired, timeout=10)
        assert published_bundles(kube) == expected
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


# --- the plan itself (pure) --------------------------------------------------------------------


POLICY = Policy(hosts=tuple(certs.service_hosts(SERVICE, NAMESPACE)))


def test_plan_drops_expired_cas_and_keeps_the_signer() -> None:
    now = dt.datetime.now(dt.UTC)
    old_ca, _ = certs.generate_ca("old", dt.timedelta(days=1))
    state, _ = plan(None, POLICY, now)
    assert state is not None
    with_old = TLSState(
        ca_bundle=state.ca_bundle + old_ca, ca_key=state.ca_key, cert=state.cert, key=state.key
    )
    assert plan(with_old, POLICY, now)[0] is None  # still valid: kept
    later = now + dt.timedelta(days=2)
    dropped, why = plan(with_old, POLICY, later)
    assert dropped is not None and "expired" in why
    assert dropped.ca_bundle == state.ca_bundle and dropped.cert == state.cert


@pytest.mark.parametrize("problem", ["key", "hosts", "issuer"])
def test_plan_reissues_a_wrong_serving_certificate(problem: str) -> None:
    now = dt.datetime.now(dt.UTC)
    state, _ = plan(None, POLICY, now)
    assert state is not None
    if problem == "key":
        broken = TLSState(state.ca_bundle, state.ca_key, state.cert, ec_key())
    elif problem == "hosts":
        cert, key = certs.issue_serving(state.ca_bundle, state.ca_key, ["elsewhere"])
        broken = TLSState(state.ca_bundle, state.ca_key, cert, key)
    else:
        other_ca, other_key = certs.generate_ca()
        cert, key = certs.issue_serving(other_ca, other_key, list(POLICY.hosts))
        broken = TLSState(state.ca_bundle, state.ca_key, cert, key)
    fixed, _ = plan(broken, POLICY, now)
    assert fixed is not None
    assert fixed.ca_bundle == state.ca_bundle and fixed.cert != broken.cert
    assert issuer_of(fixed.cert) == ca_subjects(state.ca_bundle)[0]
    assert plan(fixed, POLICY, now)[0] is None


def ec_key() -> bytes:
    return certs.generate_ca()[1]


def test_plan_promotes_a_published_ca_only_after_the_grace_period() -> None:
    now = dt.datetime.now(dt.UTC)
    policy = Policy(hosts=POLICY.hosts, ca_validity=dt.timedelta(days=300))
    state, _ = plan(None, policy, now)
    assert state is not None
    staged, why = plan(state, policy, now + dt.timedelta(days=210))
    assert staged is not None and staged.next_ca_key is not None and "staged" in why
    new_ca = x509.load_pem_x509_certificates(staged.ca_bundle)[1]
    created = new_ca.not_valid_before_utc + dt.timedelta(minutes=5)
    published = {new_ca.public_bytes(serialization.Encoding.DER)}
    # Published but too recent: kube-apiserver may not have loaded the new caBundle yet.
    early = created + policy.promote_after - dt.timedelta(seconds=30)
    assert plan(staged, policy, early, published)[0] is None
    # Old enough but not published: still waiting.
    late = created + policy.promote_after + dt.timedelta(seconds=30)
    assert plan(staged, policy, late, set())[0] is None
    promoted, why = plan(staged, policy, late, published)
    assert promoted is not None and "signs from now on" in why
    assert promoted.ca_key == staged.next_ca_key and promoted.next_ca_key is None
    assert issuer_of(promoted.cert) == new_ca.subject.rfc4514_string()


# --- end to end: the chart's args, `serve`, AutoTLS and the chart's `helm test` script ---------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The test pod resolves <service>.<namespace>.svc through cluster DNS; here it is this machine.
_DNS_SHIM = f"""
import socket
_getaddrinfo = socket.getaddrinfo
def _resolve(host, *args, **kwargs):
    return _getaddrinfo("127.0.0.1" if host == {HOST!r} else host, *args, **kwargs)
socket.getaddrinfo = _resolve
"""


@pytest.mark.slow
def test_chart_deployment_and_helm_test_against_the_real_server(
    kube: FakeKube, tmp_path: Path
) -> None:
    port = _free_port()
    proc = subprocess.run(
        [helm(), "template", "logaas-webhook", str(CHART), "-n", NAMESPACE,
         *[a for item in (*REQUIRED, f"service.port={port}") for a in ("--set", item)]],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    (tmp_path / "config.yaml").write_text(config_map["data"]["config.yaml"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                "users": [{"name": "fake", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    # The chart's arguments, with this machine's address and paths for the pod's.
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--cert-dir": str(tmp_path / "certs"),
        "--config": str(tmp_path / "config.yaml"),
    }
    args = list(container["args"])
    for flag, value in local.items():
        args[args.index(flag) + 1] = value
    command = [str(Path(sys.executable).parent / "logaas-webhook")]
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "POD_NAMESPACE": NAMESPACE}
    server = subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        script = test_pod["spec"]["containers"][0]["args"][1]
        script = script.replace("/ca/ca.crt", str(tmp_path / "certs" / "ca.crt"))
        assert test_pod["spec"]["containers"][0]["command"] == ["python3"]
        assert kube.wait_for(lambda: (tmp_path / "certs" / "ca.crt").is_file(), timeout=30)
        result = subprocess.run(
            [sys.executable, "-c", _DNS_SHIM + script],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok: /mutate injects an annotated pod" in result.stdout
        assert "ok: /mutate/namespace leaves an opted-out pod alone" in result.stdout
        # The server got its certificate from the Secret it created, published the caBundle
        # on both entries of the chart's webhook config, and serves with that CA.
        state = secret_state(kube)
        assert (tmp_path / "certs" / "ca.crt").read_bytes() == state.ca_bundle
        assert published_bundles(kube) == [state.ca_bundle] * 2
        # Every API call the server made is allowed by the chart's RBAC for its ServiceAccount.
        account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        calls = list(kube.requests)
        assert {c.method for c in calls} >= {"GET", "POST", "PATCH"}
        for call in calls:
            assert rbac_allows(docs, account, call.method, call.path, call.query), call
        assert {(c.method, c.path.rsplit("/", 1)[-1]) for c in calls} >= {
            ("GET", "namespaces"),  # the namespace-defaults cache (--namespace-watch)
            ("POST", "secrets"),
            ("PATCH", CONFIG),
        }
        # ... and nothing more: other Secrets and other webhook configs are out of reach.
        for method, other in (
            ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/logaas-credentials"),
            ("PUT", f"/api/v1/namespaces/{NAMESPACE}/secrets/logaas-credentials"),
            ("GET", "/api/v1/secrets"),
            ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets"),
            ("PATCH", f"/apis/{MWC_API}/{MWC}/someone-elses"),
            ("PATCH", "/api/v1/namespaces/shop"),
        ):
            assert not rbac_allows(docs, account, method, other, {}), (method, other)
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "Traceback" not in output, output
