"""Shared fixtures: settings, the engine, certificates, a real TLS server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from webhook import certs
from webhook.mutation import Injector
from webhook.settings import Settings, load_settings

# CI explores the same examples every run (a landing must not hinge on a lucky draw); local
# runs keep exploring new ones, and a failure prints the example to reproduce it.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read LOGAAS_* variables; a developer's shell must not change test results.
    for name in list(os.environ):
        if name.startswith("LOGAAS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def injector(settings: Settings) -> Injector:
    return Injector(settings)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A CA and serving certificate for localhost, generated once per module."""
    out = tmp_path_factory.mktemp("certs")
    certs.write_bundle(certs.generate_bundle(["localhost", "127.0.0.1"]), out)
    yield out


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
