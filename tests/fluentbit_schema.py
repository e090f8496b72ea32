"""Check rendered Fluent Bit configs against Fluent Bit 3.2.0's own plugin schema.

An unknown key crash-loops the agent, and Fluent Bit only notices when the plugin starts.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from webhook import fluentbit

SCHEMA = Path(__file__).resolve().parent / "data" / "fluent-bit-schema-3.2.0.json"

# Keys every plugin of a kind accepts (Fluent Bit manual, "Configuration file" and
# "Buffering & Storage"); the schema lists only each plugin's own properties.
COMMON = {
    "INPUT": {
        "name",
        "tag",
        "alias",
        "log_level",
        "log_suppress_interval",
        "mem_buf_limit",
        "storage.type",
        "storage.pause_on_chunks_overlimit",
        "threaded",
        "routable",
    },
    "FILTER": {"name", "match", "match_regex", "alias", "log_level", "log_suppress_interval"},
    "OUTPUT": {
        "name",
        "match",
        "match_regex",
        "alias",
        "log_level",
        "log_suppress_interval",
        "retry_limit",
        "workers",
        "storage.total_limit_size",
    },
}
SERVICE_KEYS = {
    "flush",
    "grace",
    "daemon",
    "dns.mode",
    "dns.resolver",
    "log_file",
    "log_level",
    "parsers_file",
    "plugins_file",
    "streams_file",
    "http_server",
    "http_listen",
    "http_port",
    "health_check",
    "hc_errors_count",
    "hc_retry_failure_count",
    "hc_period",
    "coro_stack_size",
    "scheduler.cap",
    "scheduler.base",
    "json.convert_nan_to_null",
    "storage.path",
    "storage.sync",
    "storage.checksum",
    "storage.max_chunks_up",
    "storage.backlog.mem_limit",
    "storage.metrics",
    "storage.delete_irrecoverable_chunks",
}
# The Go output plugin from the tutorial (not in Fluent Bit's schema).
LOGAAS_KEYS = {
    "address",
    "iam_address",
    "iam_client_id",
    "iam_client_secret",
    "default_project_id",
    "default_group_id",
    "default_labels",
}


@functools.cache
def _plugins() -> dict[tuple[str, str], set[str]]:
    data = json.loads(SCHEMA.read_text())
    plugins: dict[tuple[str, str], set[str]] = {}
    for kind, section in (("inputs", "INPUT"), ("filters", "FILTER"), ("outputs", "OUTPUT")):
        for plugin in data[kind]:
            options = plugin.get("properties", {}).get("options", [])
            plugins[(section, plugin["name"])] = {o["name"].lower() for o in options}
    return plugins


def unknown_keys(text: str) -> list[str]:
    """Every key of the config that Fluent Bit 3.2.0 would reject, as 'SECTION/plugin: key'."""
    problems: list[str] = []
    for section, pairs in fluentbit.parse(text):
        keys = [k.lower() for k, _ in pairs]
        if section == "SERVICE":
            problems += [f"SERVICE: {k}" for k in keys if k not in SERVICE_KEYS]
            continue
        if section in ("PARSER", "MULTILINE_PARSER"):
            continue
        name = dict((k.lower(), v) for k, v in pairs).get("name", "")
        if section == "OUTPUT" and name == "logaas":
            known = LOGAAS_KEYS
        elif (section, name) in _plugins():
            known = _plugins()[(section, name)]
        else:
            problems.append(f"{section}: unknown plugin {name!r}")
            continue
        allowed = known | COMMON.get(section, set())
        problems += [f"{section}/{name}: {k}" for k in keys if k not in allowed]
    return problems
