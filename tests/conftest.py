"""Shared fixtures: settings, the engine, certificates, a real TLS server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from webhook import certs
from webhook.mutation import Injector
from webhook.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read LOGAAS_* variables; a developer's shell must not change test results.
    import os

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
