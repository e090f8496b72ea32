"""The real server over real TLS, verified against its CA; certificate rotation under load."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.builders import admission_review, pod
from tests.kube import kubectl_patch, validate_strict
from tests.servers import Server, free_port, running_server, verified_context, wait_ready
from webhook import certs
from webhook.cli import build_parser
from webhook.tlsreload import pem_not_after


def served_certificate(url: str, ca: Path) -> x509.Certificate:
    host, port = url.removeprefix("https://").split(":")
    ctx = verified_context(ca)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_serve_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, str(args.cert_dir), args.config) == (
        "127.0.0.1",
        8443,
        "certs",
        None,
    )


def test_serve_without_arguments_generates_certs_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    env["LOGAAS_PORT"] = str(port)  # the only override: the default 8443 may be taken here
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "serve"], cwd=tmp_path, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Server(process, f"https://127.0.0.1:{port}", tmp_path / "serve.log")
    try:
        wait_ready(server, tmp_path / "certs" / "ca.crt")
        assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
            "ca.crt",
            "tls.crt",
            "tls.key",
        ]
        assert (tmp_path / "certs" / "tls.key").stat().st_mode & 0o077 == 0, "key is private"
        obj = pod({"logaas/inject": "true"})
        resp = httpx.post(
            f"{server.url}/mutate",
            json=admission_review(obj),
            verify=verified_context(tmp_path / "certs" / "ca.crt"),
        )
        patch = json.loads(base64.b64decode(resp.json()["response"]["patch"]))
        validate_strict(kubectl_patch(obj, patch))
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(cert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Server:
    with running_server(cert_dir, tmp_path_factory.mktemp("srv")) as srv:
        yield srv  # type: ignore[misc]


def test_mutate_over_verified_tls(server: Server, cert_dir: Path) -> None:
    obj = pod({"logaas/inject": "true"})
    with httpx.Client(verify=verified_context(cert_dir / "ca.crt")) as client:
        resp = client.post(f"{server.url}/mutate", json=admission_review(obj))
        assert resp.status_code == 200
        assert resp.http_version == "HTTP/1.1"
        review = resp.json()["response"]
    result = kubectl_patch(obj, json.loads(base64.b64decode(review["patch"])))
    validate_strict(result)
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["logaas-fluent-bit"]


def test_examples_admission_review(server: Server, cert_dir: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "admission-review.json"
    if not example.is_file():
        pytest.fail("examples/admission-review.json is missing")
    review = json.loads(example.read_text())
    resp = httpx.post(
        f"{server.url}/mutate", content=example.read_bytes(),
        headers={"content-type": "application/json"}, verify=verified_context(cert_dir / "ca.crt"),
    )  # fmt: skip
    response = resp.json()["response"]
    assert response["uid"] == review["request"]["uid"] and response["allowed"]
    obj = review["request"]["object"]
    result = kubectl_patch(obj, json.loads(base64.b64decode(response["patch"])))
    validate_strict(result)
    annotations = result["metadata"]["annotations"]
    assert annotations["logaas/status"] == "injected"
    assert annotations["fluentbit.io/exclude"] == "true"
    assert "logaas/fluent-bit-config" in annotations
    assert {"logaas-logs", "logaas-state", "logaas-config"} <= {
        v["name"] for v in result["spec"]["volumes"]
    }


def test_untrusted_client_is_refused(server: Server, tmp_path: Path) -> None:
    other = certs.generate_bundle(["localhost"])
    (tmp_path / "other-ca.crt").write_bytes(other.ca_cert)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", verify=verified_context(tmp_path / "other-ca.crt"))


def test_san_names(tmp_path: Path) -> None:
    code = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "certs", "generate", "--service", "hook",
         "--namespace", "logs", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "hook",
        "hook.logs",
        "hook.logs.svc",
        "hook.logs.svc.cluster.local",
    ]
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_rotation_under_concurrent_requests(tmp_path: Path) -> None:
    """Rotate the serving pair (and then the CA) while clients hammer: zero failed requests."""
    cert_dir = tmp_path / "certs"
    ca_cert, ca_key = certs.generate_ca()
    first = certs.issue_serving(ca_cert, ca_key, ["localhost", "127.0.0.1"])
    certs.write_bundle(certs.CertBundle(ca_cert, *first), cert_dir)
    (tmp_path / "trust.crt").write_bytes(ca_cert)
    next_ca_cert, next_ca_key = certs.generate_ca()
    # Clients trust both CAs, as kube-apiserver does while a caBundle carries old and new.
    (tmp_path / "trust.crt").write_bytes(ca_cert + next_ca_cert)
    trust = tmp_path / "trust.crt"

    with running_server(cert_dir, tmp_path, "--cert-reload-seconds", "0.05", ca=trust) as server:
        stop = threading.Event()
        failures: list[str] = []
        counts = [0]
        body = json.dumps(admission_review(pod({"logaas/inject": "true"}))).encode()

        def hammer(keep_alive: bool) -> None:
            ctx = verified_context(trust)
            client = httpx.Client(verify=ctx, timeout=10) if keep_alive else None
            while not stop.is_set():
                try:
                    if client is not None:
                        resp = client.post(f"{server.url}/mutate", content=body)
                    else:
                        resp = httpx.post(
                            f"{server.url}/mutate", content=body, verify=ctx, timeout=10
                        )
                    if resp.status_code != 200 or not resp.json()["response"]["allowed"]:
                        failures.append(f"HTTP {resp.status_code}")
                    counts[0] += 1
                except Exception as err:  # every failure counts, whatever its kind
                    failures.append(repr(err))

        threads = [threading.Thread(target=hammer, args=(i % 2 == 0,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            serials = {served_certificate(server.url, trust).serial_number}
            for step in range(6):
                issuer = (ca_cert, ca_key) if step < 3 else (next_ca_cert, next_ca_key)
                cert, key = certs.issue_serving(*issuer, ["localhost", "127.0.0.1"])
                # Key first, then certificate: readers see a mismatched pair for a moment.
                (cert_dir / "tls.key").write_bytes(key)
                time.sleep(0.1)
                (cert_dir / "tls.crt").write_bytes(cert)
                expected = x509.load_pem_x509_certificate(cert).serial_number
                deadline = time.monotonic() + 5
                while served_certificate(server.url, trust).serial_number != expected:
                    assert time.monotonic() < deadline, "rotated certificate not picked up"
                    time.sleep(0.05)
                serials.add(expected)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert failures == []
        assert len(serials) == 7 and counts[0] > 50
        assert server.process.poll() is None, "no restart"


def test_unusable_files_keep_the_last_good_certificate(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    certs.write_bundle(certs.generate_bundle(["127.0.0.1"]), cert_dir)
    with running_server(cert_dir, tmp_path, "--cert-reload-seconds", "0.05") as server:
        before = served_certificate(server.url, cert_dir / "ca.crt").serial_number
        (cert_dir / "tls.crt").write_text("garbage")
        time.sleep(0.3)
        after = served_certificate(server.url, cert_dir / "ca.crt").serial_number
        assert before == after
        assert "keeping the current certificate" in server.log()


def test_several_workers(cert_dir: Path, tmp_path: Path) -> None:
    with running_server(cert_dir, tmp_path, "--workers", "2") as server:
        ctx = verified_context(cert_dir / "ca.crt")
        for _ in range(10):
            assert httpx.get(f"{server.url}/healthz", verify=ctx).status_code == 200


def test_bad_flags_fail_clearly(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "serve", "--config", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and "none.yaml" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "bad.yaml").write_text("group_id: 'has space'\n")
    out = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "serve", "--config", str(tmp_path / "bad.yaml")],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and "group_id" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("years", [1, 40])  # UTCTime, and GeneralizedTime after 2049
def test_served_expiry_is_read_without_the_cryptography_package(years: int) -> None:
    ca_cert, ca_key = certs.generate_ca(validity=dt.timedelta(days=366 * years))
    cert, _ = certs.issue_serving(ca_cert, ca_key, ["x"], dt.timedelta(days=366 * years))
    assert pem_not_after(cert) == certs.not_after(cert)
    assert pem_not_after(cert + ca_cert) == certs.not_after(cert), "first of a bundle"
    with pytest.raises(ValueError):
        pem_not_after(b"not a certificate")


def test_server_does_not_load_certificate_tooling(server: Server) -> None:
    # Making certificates needs the cryptography package (~8 MiB per replica); serving
    # existing ones does not, and the running server has not loaded it.
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "uvloop" in maps and "cryptography" not in maps
