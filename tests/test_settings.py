"""Settings: defaults < YAML file < environment < explicit overrides; bad values named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from webhook.settings import load_settings, quantity


def test_embedded_defaults_work() -> None:
    settings = load_settings()
    assert settings.logaas_address.startswith("https://")
    assert settings.sidecar.native is True
    assert {"kube-system", "kube-public", "kube-node-lease"} <= settings.never_injected


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "group_id: from-file\nproject_id: file-project\n"
        "sidecar:\n  native: false\n  image: reg.example/fb:1\n"
        "group_policy:\n  team-*: [grp-a]\n"
    )
    monkeypatch.setenv("LOGAAS_GROUP_ID", "from-env")
    monkeypatch.setenv("LOGAAS_SIDECAR__CPU_LIMIT", "300m")
    monkeypatch.setenv("LOGAAS_HOST", "0.0.0.0")  # a serve flag's env var is not a setting
    settings = load_settings(config)
    assert settings.group_id == "from-env"
    assert settings.project_id == "file-project"
    assert settings.sidecar.native is False and settings.sidecar.image == "reg.example/fb:1"
    assert settings.sidecar.cpu_limit == "300m"
    assert settings.group_policy == {"team-*": ["grp-a"]}
    assert load_settings(config, group_id="explicit").group_id == "explicit"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"group_id": "has space"}, "group_id"),
        ({"logaas_address": "ftp://x"}, "logaas_address"),
        ({"iam_address": "https://x/${SECRET}"}, "iam_address"),
        ({"default_labels": {"a": "${LOGAAS_IAM_CLIENT_SECRET}"}}, "default_labels"),
        ({"log_path": "relative"}, "log_path"),
        ({"sidecar": {"pull_policy": "Sometimes"}}, "pull_policy"),
        ({"sidecar": {"memory_limit": "lots"}}, "memory_limit"),
        ({"group_policy": {"ns": ["bad group"]}}, "group_policy"),
        ({"unknown_setting": 1}, "unknown_setting"),
        ({"credentials": {"secret_name": "Not_A_Name"}}, "secret_name"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        load_settings(**overrides)
    assert field in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", "0.1"), ("1", "1"), ("128Mi", str(128 * 2**20)), ("1e3", "1000"), ("2k", "2000")],
)
def test_quantities(text: str, value: str) -> None:
    assert quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "1.2.3", "5x", "-1", "Mi"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        quantity(text)
