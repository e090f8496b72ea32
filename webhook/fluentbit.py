"""Fluent Bit classic-format configuration: one writer and one reader shared by both modes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from webhook import names
from webhook.settings import Settings

# A section is its name (SERVICE, INPUT, FILTER, OUTPUT, PARSER, MULTILINE_PARSER) and its
# ordered key/value pairs; keys may repeat (e.g. record_modifier's Record).
Section = tuple[str, Sequence[tuple[str, str]]]

# Fluent Bit's classic reader splits a line into key and value at the first whitespace and
# reads lines into a 4,096-byte buffer (with its newline and NUL): longer lines fail to load.
MAX_LINE = 4094


class ConfigError(ValueError):
    """A value that cannot be written as one classic-format line."""


def render(sections: Iterable[Section]) -> str:
    out: list[str] = []
    for name, pairs in sections:
        out.append(f"[{name}]")
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            if not key or any(c.isspace() for c in key):
                raise ConfigError(f"[{name}] key {key!r} must be one word")
            if "\n" in value or "\r" in value or value.strip() != value or not value:
                raise ConfigError(f"[{name}] {key}: value {value!r} must be one non-empty line")
            line = f"    {key.ljust(width)} {value}"
            if len(line) > MAX_LINE:
                raise ConfigError(f"[{name}] {key}: line of {len(line)} chars exceeds {MAX_LINE}")
            out.append(line)
        out.append("")
    return "\n".join(out)


def parse(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Read classic format back (for tests and tooling): sections with ordered pairs."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().upper(), []))
            continue
        if not sections:
            raise ConfigError(f"line {number}: {line!r} outside a section")
        key, _, value = line.partition(" ")
        if not value.strip():
            raise ConfigError(f"line {number}: key {key!r} has no value")
        sections[-1][1].append((key, value.strip()))
    return sections


def logaas_destination(
    settings: Settings, project_id: str, group_id: str, labels_json: str, storage_limit: str
) -> list[tuple[str, str]]:
    """The logaas output's keys after Name/Alias/Match; credentials only as ${VAR}."""
    return [
        ("address", settings.logaas_address),
        ("iam_address", settings.iam_address),
        ("iam_client_id", "${" + names.ENV_CLIENT_ID + "}"),
        ("iam_client_secret", "${" + names.ENV_CLIENT_SECRET + "}"),
        ("default_project_id", project_id),
        ("default_group_id", group_id),
        ("default_labels", labels_json),
        ("Retry_Limit", "no_limits"),
        ("storage.total_limit_size", storage_limit),
    ]
