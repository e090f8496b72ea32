"""The node agent's Fluent Bit configs (classic format), rendered from a routing Plan.

Pipeline of the primary process:

    tail /var/log/containers/*.log  (tag kube.<path>, record key logaas_path = file path)
      Exclude_Path: the agent's own pods, namespaces left to the sidecar webhook
    grep         drops the rest of those namespaces when their list outgrows one line
    kubernetes   pod metadata; K8S-Logging.Exclude drops pods annotated fluentbit.io/exclude
    rewrite_tag  records of namespaces with their own route: kube.X -> s<process>.kube.X
    record_modifier  removes logaas_path
    outputs      kube.*       -> logaas, the default group
                 ^s0\\.kube...(?:ns|..)_ -> logaas, one route each (namespaces partitioned)
                 s<k>.*       -> forward to shard process k (127.0.0.1:24240+k)

Every tag matches exactly one output of a process: `kube.` and `s<k>.` prefixes are disjoint,
and each namespace appears in exactly one output's alternation.
"""

from __future__ import annotations

from webhook import fluentbit
from webhook.daemonset.routing import (
    CONTAINERS_DIR,
    PATH_PREFIX_RE,
    VALUE_BUDGET,
    Output,
    Plan,
    Route,
    alternation,
    pack,
)
from webhook.fluentbit import Section
from webhook.settings import Settings

CONFIG_DIR = "/fluent-bit/etc"
PRIMARY_CONFIG = "fluent-bit.conf"
PARSERS_CONFIG = "parsers.conf"
STATE_DIR = "/var/lib/logaas-agent"
PATH_KEY = "logaas_path"
TAG_PREFIX = "kube."
HTTP_PORT = 2020
FORWARD_PORT = 24240
GRACE_SECONDS = 20
TERMINATION_GRACE_SECONDS = 30
MEM_BUF_LIMIT = "50MB"
STORAGE_LIMIT = "2G"

Pairs = list[tuple[str, str]]


def shard_config(process: int) -> str:
    return PRIMARY_CONFIG if process == 0 else f"shard-{process}.conf"


def http_port(process: int) -> int:
    return HTTP_PORT + process


def shard_tag(process: int) -> str:
    return f"s{process}."


def tag_of_path(path: str) -> str:
    """The tag tail gives a file under `Tag kube.*`: the path with / turned into dots."""
    return TAG_PREFIX + path.strip("/").replace("/", ".")


def own_pods_glob(plan: Plan) -> str:
    return f"{CONTAINERS_DIR}/{plan.agent_name}-*_{plan.agent_namespace}_*.log"


def namespace_glob(namespace: str) -> str:
    return f"{CONTAINERS_DIR}/*_{namespace}_*.log"


def path_regex(namespaces: list[str]) -> str:
    return PATH_PREFIX_RE + alternation(namespaces) + "_"


def tag_regex(process: int, namespaces: tuple[str, ...] | list[str]) -> str:
    prefix = (shard_tag(process) + tag_of_path(CONTAINERS_DIR)).replace(".", "\\.")
    return "^" + prefix + "\\.[^_]+_" + alternation(list(namespaces)) + "_"


def service(process: int, parsers: bool) -> Section:
    pairs: Pairs = [
        ("Flush", "1"),
        ("Grace", str(GRACE_SECONDS)),
        ("Log_Level", "info"),
        ("Daemon", "off"),
        ("HTTP_Server", "On"),
        ("HTTP_Listen", "0.0.0.0"),
        ("HTTP_Port", str(http_port(process))),
        ("Health_Check", "On"),
        ("storage.path", f"{STATE_DIR}/buffer-{process}"),
        ("storage.sync", "normal"),
        ("storage.checksum", "off"),
        ("storage.backlog.mem_limit", "32M"),
        ("storage.metrics", "On"),
    ]
    if parsers:
        pairs.append(("Parsers_File", f"{CONFIG_DIR}/{PARSERS_CONFIG}"))
    return ("SERVICE", pairs)


def logaas_output(settings: Settings, route: Route, alias: str, match: Pairs) -> Section:
    return (
        "OUTPUT",
        [
            ("Name", "logaas"),
            ("Alias", alias),
            *match,
            *fluentbit.logaas_destination(
                settings, route.project_id, route.group_id, route.labels_json, STORAGE_LIMIT
            ),
        ],
    )


def route_outputs(settings: Settings, plan: Plan, process: int) -> list[Section]:
    sections: list[Section] = []
    for index, out in enumerate(plan.outputs):
        if out.process == process:
            sections.append(_route_output(settings, out, index))
    return sections


def _route_output(settings: Settings, out: Output, index: int) -> Section:
    match = [("Match_Regex", tag_regex(out.process, out.namespaces))]
    return logaas_output(settings, out.route, f"route-{index}", match)


def primary(settings: Settings, plan: Plan) -> str:
    exclude_globs = [own_pods_glob(plan)]
    overflow: list[str] = []
    used = len(exclude_globs[0])
    for namespace in plan.excluded:
        item = namespace_glob(namespace)
        if not overflow and used + len(item) + 1 <= VALUE_BUDGET:
            exclude_globs.append(item)
            used += len(item) + 1
        else:
            overflow.append(namespace)

    sections: list[Section] = [service(0, parsers=True)]
    sections.append(
        (
            "INPUT",
            [
                ("Name", "tail"),
                ("Alias", "containers"),
                ("Tag", TAG_PREFIX + "*"),
                ("Path", f"{CONTAINERS_DIR}/*.log"),
                ("Exclude_Path", ",".join(exclude_globs)),
                ("Path_Key", PATH_KEY),
                ("multiline.parser", "docker, cri"),
                ("DB", f"{STATE_DIR}/tail-containers.db"),
                ("DB.locking", "true"),
                ("Refresh_Interval", "5"),
                ("Rotate_Wait", "30"),
                ("Skip_Long_Lines", "On"),
                ("Skip_Empty_Lines", "On"),
                ("Buffer_Chunk_Size", "64k"),
                ("Buffer_Max_Size", "256k"),
                ("Mem_Buf_Limit", MEM_BUF_LIMIT),
                ("storage.type", "filesystem"),
            ],
        )
    )
    match_kube = ("Match", TAG_PREFIX + "*")
    if overflow:
        excludes = [
            ("Exclude", f"{PATH_KEY} {path_regex(run)}")
            for run in pack(overflow, VALUE_BUDGET - 120)
        ]
        sections.append(
            ("FILTER", [("Name", "grep"), ("Alias", "sidecar-namespaces"), match_kube, *excludes])
        )
    sections.append(
        (
            "FILTER",
            [
                ("Name", "kubernetes"),
                ("Alias", "kubernetes"),
                match_kube,
                ("Kube_Tag_Prefix", tag_of_path(CONTAINERS_DIR) + "."),
                ("Merge_Log", "On"),
                ("Keep_Log", "On"),  # the original line stays under `log`, as in the sidecar
                ("K8S-Logging.Exclude", "On"),
                ("K8S-Logging.Parser", "Off"),
                ("Labels", "On"),
                ("Annotations", "Off"),
                ("Buffer_Size", "0"),
            ],
        )
    )
    rules: Pairs = []
    for process in range(plan.processes):
        for run in pack(plan.namespaces_of(process), VALUE_BUDGET - 120):
            regex = path_regex(run)
            rules.append(("Rule", f"${PATH_KEY} {regex} {shard_tag(process)}$TAG false"))
    if rules:
        sections.append(
            (
                "FILTER",
                [
                    ("Name", "rewrite_tag"),
                    ("Alias", "routes"),
                    match_kube,
                    *rules,
                    ("Emitter_Name", "routed"),
                    ("Emitter_Storage.type", "filesystem"),
                    ("Emitter_Mem_Buf_Limit", MEM_BUF_LIMIT),
                ],
            )
        )
    sections.append(
        (
            "FILTER",
            [
                ("Name", "record_modifier"),
                ("Alias", "drop-path"),
                ("Match", "*"),
                ("Remove_key", PATH_KEY),
            ],
        )
    )
    sections.append(logaas_output(settings, plan.default, "default", [match_kube]))
    sections.extend(route_outputs(settings, plan, 0))
    for process in range(1, plan.processes):
        sections.append(
            (
                "OUTPUT",
                [
                    ("Name", "forward"),
                    ("Alias", f"to-shard-{process}"),
                    ("Match", shard_tag(process) + "*"),
                    ("Host", "127.0.0.1"),
                    ("Port", str(FORWARD_PORT + process)),
                    ("Retry_Limit", "no_limits"),
                    ("storage.total_limit_size", STORAGE_LIMIT),
                ],
            )
        )
    return fluentbit.render(sections)


def shard(settings: Settings, plan: Plan, process: int) -> str:
    sections: list[Section] = [
        service(process, parsers=False),
        (
            "INPUT",
            [
                ("Name", "forward"),
                ("Alias", "from-primary"),
                ("Listen", "127.0.0.1"),
                ("Port", str(FORWARD_PORT + process)),
                ("Mem_Buf_Limit", MEM_BUF_LIMIT),
                ("storage.type", "filesystem"),
            ],
        ),
        *route_outputs(settings, plan, process),
    ]
    return fluentbit.render(sections)


PARSERS = fluentbit.render(
    [
        (
            "PARSER",
            [
                ("Name", "docker"),
                ("Format", "json"),
                ("Time_Key", "time"),
                ("Time_Format", "%Y-%m-%dT%H:%M:%S.%L"),
                ("Time_Keep", "On"),
            ],
        ),
        (
            "PARSER",
            [
                ("Name", "cri"),
                ("Format", "regex"),
                (
                    "Regex",
                    r"^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[^ ]*) (?<message>.*)$",
                ),
                ("Time_Key", "time"),
                ("Time_Format", "%Y-%m-%dT%H:%M:%S.%L%z"),
                ("Time_Keep", "On"),
            ],
        ),
        ("PARSER", [("Name", "json"), ("Format", "json")]),
    ]
)


def render_configs(settings: Settings, plan: Plan) -> dict[str, str]:
    """ConfigMap data: fluent-bit.conf (primary), parsers.conf, shard-<k>.conf per shard."""
    data = {PRIMARY_CONFIG: primary(settings, plan), PARSERS_CONFIG: PARSERS}
    for process in range(1, plan.processes):
        data[shard_config(process)] = shard(settings, plan, process)
    return data
