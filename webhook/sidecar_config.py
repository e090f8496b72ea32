"""The Fluent Bit classic config a sidecar runs, rendered per pod from its options."""

from __future__ import annotations

import json

from webhook import fluentbit, names
from webhook.annotations import Options
from webhook.fluentbit import Section
from webhook.settings import Settings

LOGS_MOUNT = "/logaas/logs"
# An app container that already mounts a volume at its log path keeps it; the sidecar mounts
# that volume here (beside, not inside, the read-only LOGS_MOUNT).
SHARED_MOUNT = "/logaas/shared"
STATE_MOUNT = "/logaas/state"
CONFIG_MOUNT = "/logaas/config"
CONFIG_PATH = f"{CONFIG_MOUNT}/{names.CONFIG_FILE}"
# The fluent-bit image ships json and logfmt parsers here; extra configured parsers too.
IMAGE_PARSERS_FILE = "/fluent-bit/etc/parsers.conf"
TAG_PREFIX = "app."


def grace_seconds(termination_grace: int | None) -> int:
    """Fluent Bit's Grace: time to flush at shutdown, kept below the pod's grace period."""
    period = 30 if termination_grace is None else termination_grace
    return max(1, min(10, period - 5))


def log_dir(container: str, reused: bool) -> str:
    """Where the sidecar sees one app container's log directory."""
    return f"{SHARED_MOUNT if reused else LOGS_MOUNT}/{container}"


def http_server(port: int) -> list[tuple[str, str]]:
    """Fluent Bit's HTTP server (probes, metrics); port 0: none (a hostNetwork pod's sidecar
    would bind the node's port, and two such pods on one node would collide)."""
    if port == 0:
        return [("HTTP_Server", "Off")]
    return [
        ("HTTP_Server", "On"),
        ("HTTP_Listen", "0.0.0.0"),
        ("HTTP_Port", str(port)),
        ("Health_Check", "On"),
    ]


def render(
    options: Options,
    settings: Settings,
    http_port: int,
    termination_grace: int | None,
    reused: frozenset[str] = frozenset(),
    skipped: frozenset[str] = frozenset(),
) -> str:
    service: list[tuple[str, str]] = [
        ("Flush", str(settings.sidecar.flush_seconds)),
        ("Grace", str(grace_seconds(termination_grace))),
        ("Log_Level", "info"),
        ("Daemon", "off"),
        *http_server(http_port),
        ("storage.path", f"{STATE_MOUNT}/buffer"),
        ("storage.sync", "normal"),
        ("storage.backlog.mem_limit", settings.sidecar.mem_buf_limit),
        ("storage.metrics", "On"),
    ]
    if options.parser != "none":
        service.append(("Parsers_File", IMAGE_PARSERS_FILE))
    sections: list[Section] = [("SERVICE", service)]

    for container in options.containers:
        if container in skipped:
            continue
        tail = [
            ("Name", "tail"),
            ("Alias", f"tail-{container}"),
            ("Tag", f"{TAG_PREFIX}{container}"),
            ("Path", f"{log_dir(container, container in reused)}/{options.log_files}"),
            ("DB", f"{STATE_MOUNT}/tail-{container}.db"),
            ("DB.locking", "true"),
            ("Read_from_Head", "true"),
            ("Refresh_Interval", "5"),
            ("Rotate_Wait", "10"),
            ("Skip_Long_Lines", "On"),
            ("Skip_Empty_Lines", "On"),
            ("Mem_Buf_Limit", settings.sidecar.mem_buf_limit),
            ("storage.type", "filesystem"),
        ]
        if options.multiline:
            tail.append(("multiline.parser", options.multiline))
        sections.append(("INPUT", tail))
        sections.append(
            (
                "FILTER",
                [
                    ("Name", "record_modifier"),
                    ("Match", f"{TAG_PREFIX}{container}"),
                    ("Record", f"kubernetes_container_name {container}"),
                ],
            )
        )

    match_all = f"{TAG_PREFIX}*"
    if options.parser != "none":
        sections.append(
            (
                "FILTER",
                [
                    ("Name", "parser"),
                    ("Match", match_all),
                    ("Key_Name", "log"),
                    ("Parser", options.parser),
                    ("Reserve_Data", "On"),
                ],
            )
        )
    # Pod metadata from the Downward API env vars, nested like the kubernetes filter's
    # output so records look the same in both modes.
    sections.append(
        (
            "FILTER",
            [
                ("Name", "record_modifier"),
                ("Match", match_all),
                ("Record", "kubernetes_pod_name ${POD_NAME}"),
                ("Record", "kubernetes_namespace_name ${POD_NAMESPACE}"),
                ("Record", "kubernetes_pod_id ${POD_UID}"),
                ("Record", "kubernetes_host ${NODE_NAME}"),
            ],
        )
    )
    sections.append(
        (
            "FILTER",
            [
                ("Name", "nest"),
                ("Match", match_all),
                ("Operation", "nest"),
                ("Wildcard", "kubernetes_*"),
                ("Nest_under", "kubernetes"),
                ("Remove_prefix", "kubernetes_"),
            ],
        )
    )
    sections.append(("OUTPUT", output_pairs(settings, options, match_all)))
    return fluentbit.render(sections)


def output_pairs(settings: Settings, options: Options, match: str) -> list[tuple[str, str]]:
    labels = json.dumps(options.labels, separators=(",", ":"), ensure_ascii=False)
    return [
        ("Name", "logaas"),
        ("Match", match),
        *fluentbit.logaas_destination(
            settings,
            options.project_id,
            options.group_id,
            labels,
            settings.sidecar.storage_limit,
        ),
    ]
