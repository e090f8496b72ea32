"""Product settings: defaults < YAML config file < environment (LOGAAS_*, nested with __)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from webhook import names

ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
QUANTITY_PATTERN = (
    r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?$"
)
_URL = re.compile(r"^https?://[^\s${}]+$")
# A value that lands in a classic-format Fluent Bit line must stay on that line and must not
# expand an environment variable (Fluent Bit expands ${...} anywhere in a value).
_CONFIG_SAFE = re.compile(r"^[^\x00-\x1f\x7f]*$")


_SUFFIX: dict[str, Decimal | int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def config_safe(value: str) -> bool:
    return bool(_CONFIG_SAFE.match(value)) and "${" not in value


def quantity(value: str) -> Decimal:
    """The numeric value of a Kubernetes quantity that matches QUANTITY_PATTERN."""
    match = re.match(r"^([0-9.]+)(.*)$", value)
    if not match or not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    return Decimal(number) * Decimal(_SUFFIX[suffix])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CredentialsSettings(_Model):
    """The Secret holding the service account key; the webhook never reads its values."""

    secret_name: str = Field("logaas-credentials", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    client_id_key: str = Field("client-id", pattern=r"^[-._a-zA-Z0-9]+$")
    client_secret_key: str = Field("client-secret", pattern=r"^[-._a-zA-Z0-9]+$")
    # The companion copies the Secret into namespaces that need it (labelled enabled or
    # annotated logaas/credentials: sync); the webhook warns when a pod's namespace has neither.
    synced: bool = True


class SidecarSettings(_Model):
    image: str = "your-registry.cr.cloud.ru/fluent-bit-logaas:3.2.0"
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # Native sidecar (restartable init container, Kubernetes 1.29+); False = regular container.
    native: bool = True
    cpu_request: str = Field("20m", pattern=QUANTITY_PATTERN)
    memory_request: str = Field("32Mi", pattern=QUANTITY_PATTERN)
    cpu_limit: str = Field("200m", pattern=QUANTITY_PATTERN)
    memory_limit: str = Field("128Mi", pattern=QUANTITY_PATTERN)
    http_port: int = Field(2020, ge=1024, le=65000)
    run_as_user: int = Field(10001, ge=1)
    logs_size_limit: str = Field("1Gi", pattern=QUANTITY_PATTERN)
    state_size_limit: str = Field("512Mi", pattern=QUANTITY_PATTERN)
    # Fluent Bit Mem_Buf_Limit of each tail input and the filesystem buffer cap of the output.
    mem_buf_limit: str = Field("5MB", pattern=r"^[0-9]+[KMG]?B?$")
    storage_limit: str = Field("256M", pattern=r"^[0-9]+[KMG]?B?$")
    flush_seconds: int = Field(1, ge=1, le=60)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOGAAS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    # Set by load_settings(); a class attribute because pydantic-settings builds sources per class.
    _yaml_file: ClassVar[Path | None] = None

    logaas_address: str = "https://console.cloud.ru/"
    iam_address: str = "https://auth.iam.sbercloud.ru/"
    project_id: str = Field("example-project", pattern=ID_PATTERN)
    group_id: str = Field("example-group", pattern=ID_PATTERN)
    default_labels: dict[str, str] = Field(default_factory=lambda: {"source": "kubernetes"})
    credentials: CredentialsSettings = CredentialsSettings()
    sidecar: SidecarSettings = SidecarSettings()
    log_path: str = "/var/log/app"
    log_files: str = "*.log"
    # Parser names, besides json/logfmt/none, that the sidecar image's parsers.conf defines.
    parsers: list[str] = Field(default_factory=list)
    # Never injected, in addition to kube-system, kube-public, kube-node-lease.
    excluded_namespaces: list[str] = Field(default_factory=list)
    # The webhook's own namespace (never injected); the chart sets it from the Downward API.
    own_namespace: str | None = None
    inject_host_network: bool = False
    # Namespace name or glob -> log groups it may use. Unlisted namespaces may use any group;
    # the default group_id is always allowed.
    group_policy: dict[str, list[str]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls._yaml_file))
        return tuple(sources)

    @field_validator("logaas_address", "iam_address")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _URL.match(value):
            raise ValueError(f"{value!r} is not an http(s) URL without spaces or ${{}}")
        return value

    @field_validator("default_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not key or not config_safe(key) or not config_safe(item):
                raise ValueError(
                    f"label {key!r}: {item!r} must be a non-empty key and a value without "
                    "control characters or ${"
                )
        return value

    @field_validator("log_path")
    @classmethod
    def _log_path(cls, value: str) -> str:
        problem = log_path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("group_policy")
    @classmethod
    def _policy(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for namespace, groups in value.items():
            for group in groups:
                if not re.match(ID_PATTERN, group):
                    raise ValueError(f"group_policy[{namespace!r}]: {group!r} is not a group id")
        return value

    @model_validator(mode="after")
    def _parsers(self) -> Settings:
        for parser in self.parsers:
            if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", parser):
                raise ValueError(f"parsers: {parser!r} is not a Fluent Bit parser name")
        return self

    @property
    def never_injected(self) -> frozenset[str]:
        extra = [self.own_namespace] if self.own_namespace else []
        return frozenset((*names.SYSTEM_NAMESPACES, *self.excluded_namespaces, *extra))


def log_path_problem(value: str) -> str | None:
    """Why a log path is unusable, or None: absolute, not '/', no '..', no odd characters."""
    if not value.startswith("/") or value.rstrip("/") == "":
        return "must be an absolute directory other than /"
    parts = value.split("/")
    if ".." in parts or "." in parts:
        return "must not contain . or .. segments"
    if not re.match(r"^[A-Za-z0-9_./@+-]+$", value) or "//" in value or len(value) > 256:
        return "may only use letters, digits and _ . / @ + - (at most 256 characters)"
    return None


def settings_problem(err: ValidationError) -> str:
    """A settings error without the offending values: a credential put in the wrong place
    (env var, config file) must not end up in a log or a terminal."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or 'settings'}: {item['msg']}"
        for item in err.errors(include_input=False, include_url=False)
    ]
    return f"{len(parts)} invalid setting(s): " + "; ".join(parts)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, an optional YAML file, the environment and explicit overrides."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    cls = type("FileSettings", (Settings,), {"_yaml_file": config_file})
    loaded: Settings = cls(**overrides)
    return loaded
