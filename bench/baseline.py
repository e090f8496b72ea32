"""The bare baseline: an ASGI app that reads the body and answers fixed bytes.

It runs under exactly the uvicorn settings and TLS setup the webhook uses (same loop, parser,
limits, certificate and SNI-following SSLContext), so the ratio webhook/baseline is what the
webhook itself costs. Usage: python bench/baseline.py --port P --cert-dir DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

from webhook.server import ServeOptions, _uvicorn_config, bind
from webhook.tlsreload import CertificateSource

FIXED = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"0b7e3c1a-9f2d-4e6b-8a1c-3d5f7e9a1b2c","allowed":true}}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(FIXED)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": FIXED})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    args = parser.parse_args()
    options = ServeOptions(host=args.host, port=args.port, cert_dir=args.cert_dir)
    sock = bind(options.host, options.port, options.backlog)
    config = _uvicorn_config(app, options)
    config.load()
    config.ssl = CertificateSource(options.cert_dir).server_context()
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
