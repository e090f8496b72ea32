"""`serve` and `certs generate`: run the webhook, make its certificates."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webhook import names

LOCAL_HOSTS = ["localhost", "127.0.0.1", "::1"]


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"LOGAAS_{name}", default)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the admission webhook over HTTPS",
        description="Run the webhook. With no arguments: https://127.0.0.1:8443 with a "
        "self-generated certificate in ./certs and the embedded example settings. "
        "Flags override the LOGAAS_HOST, LOGAAS_PORT, LOGAAS_CERT_DIR, LOGAAS_CONFIG and "
        "LOGAAS_WORKERS environment variables.",
    )
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(_env("PORT", "8443") or 8443))
    serve.add_argument("--cert-dir", type=Path, default=Path(_env("CERT_DIR", "certs") or "certs"))
    serve.add_argument("--config", type=Path, default=_env("CONFIG"), help="YAML settings file")
    serve.add_argument("--workers", type=int, default=int(_env("WORKERS", "1") or 1))
    serve.add_argument(
        "--cert-reload-seconds", type=float, default=10.0, help="how often to check cert files"
    )
    serve.add_argument(
        "--namespace-watch",
        action="store_true",
        help="watch namespaces for logaas/* defaults (needs get/list/watch on namespaces)",
    )
    serve.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster)")
    serve.add_argument("--log-level", default="INFO")
    auto = serve.add_argument_group("tls.mode=auto (the webhook keeps its Secret and caBundle)")
    auto.add_argument("--tls-auto-secret", help="Secret that stores the CA and serving pair")
    auto.add_argument("--tls-auto-webhook", help="MutatingWebhookConfiguration to keep caBundle in")
    auto.add_argument("--tls-auto-service", help="Service name the certificate is for")
    auto.add_argument("--tls-auto-namespace", default=os.environ.get("POD_NAMESPACE"))
    serve.set_defaults(func=run_serve)

    certs_cmd = subparsers.add_parser("certs", help="certificate tools")
    certs_sub = certs_cmd.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    gen = certs_sub.add_parser(
        "generate",
        help="write a CA and an ECDSA P-256 serving certificate (ca.crt, tls.crt, tls.key)",
    )
    gen.add_argument("--service", required=True, help="Service name of the webhook")
    gen.add_argument("--namespace", required=True, help="namespace of the Service")
    gen.add_argument("--out", type=Path, default=Path("certs"), help="output directory")
    gen.add_argument(
        "--host", action="append", default=[], help="extra DNS name or IP SAN (repeatable)"
    )
    gen.set_defaults(func=run_certs_generate)


def _fail(message: str) -> int:
    print(f"logaas-webhook: {message}", file=sys.stderr)
    return 2


def run_certs_generate(args: argparse.Namespace) -> int:
    from webhook import certs

    hosts = [*certs.service_hosts(args.service, args.namespace), *args.host]
    try:
        bundle = certs.generate_bundle(hosts)
        certs.write_bundle(bundle, args.out)
    except (OSError, ValueError) as err:
        return _fail(f"cannot write certificates to {args.out}: {err}")
    for name in (names.CA_FILE, names.CERT_FILE, names.KEY_FILE):
        print(args.out / name)
    return 0


def _generate_local_certs(cert_dir: Path) -> bool:
    """Make a local CA and serving pair unless cert_dir has one (the package that makes
    certificates is only loaded then: it would cost every server ~8 MiB)."""
    if (cert_dir / names.CERT_FILE).is_file() and (cert_dir / names.KEY_FILE).is_file():
        return False
    from webhook import certs

    return certs.ensure_bundle(
        cert_dir, [*LOCAL_HOSTS, *certs.service_hosts("logaas-webhook", "logaas")]
    )


def run_serve(args: argparse.Namespace) -> int:
    from webhook.server import ServeOptions, configure_logging, serve
    from webhook.settings import load_settings, settings_problem

    configure_logging(args.log_level.upper())
    try:
        settings = load_settings(args.config)
    except FileNotFoundError as err:
        return _fail(str(err))
    except ValidationError as err:
        return _fail(f"invalid settings: {settings_problem(err)}")
    if not 0 < args.port < 65536:
        return _fail(f"--port {args.port}: accepted 1-65535")
    if args.workers < 1:
        return _fail(f"--workers {args.workers}: accepted 1 or more")
    background = None
    if args.tls_auto_secret:
        missing = [
            flag
            for flag, value in (
                ("--tls-auto-webhook", args.tls_auto_webhook),
                ("--tls-auto-service", args.tls_auto_service),
                ("--tls-auto-namespace", args.tls_auto_namespace),
            )
            if not value
        ]
        if missing:
            return _fail(f"--tls-auto-secret also needs {', '.join(missing)}")
        from webhook.tlsauto import AutoTLS, TLSAutoError

        auto = AutoTLS(
            namespace=args.tls_auto_namespace,
            secret_name=args.tls_auto_secret,
            webhook_config=args.tls_auto_webhook,
            service=args.tls_auto_service,
            cert_dir=args.cert_dir,
            kubeconfig=args.kubeconfig,
        )
        try:
            auto.ensure()
        except TLSAutoError as err:
            return _fail(f"tls.mode=auto: {err}")

        def background(stop: threading.Event) -> None:
            auto.start(stop)

    elif _generate_local_certs(args.cert_dir):
        print(
            f"logaas-webhook: generated a self-signed CA and certificate in {args.cert_dir}/",
            file=sys.stderr,
        )
    options = ServeOptions(
        host=args.host,
        port=args.port,
        cert_dir=args.cert_dir,
        workers=args.workers,
        cert_reload_seconds=args.cert_reload_seconds,
        namespace_watch=args.namespace_watch,
        kubeconfig=args.kubeconfig,
    )
    try:
        serve(settings, options, background)
    except OSError as err:
        return _fail(f"cannot serve on {args.host}:{args.port}: {err.strerror or err}")
    return 0
