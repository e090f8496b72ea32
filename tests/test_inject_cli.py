"""`logaas-webhook inject`: the command as a GitOps pipeline meets it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.offline_checks import check_injected, is_injected, run_cli, templates, validate
from webhook import names

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".venv" / "bin" / "logaas-webhook"
OPT_IN = {names.INJECT: "true"}


def template(annotations: dict[str, str] | None = None, app: str = "web") -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": app}}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return {
        "metadata": meta,
        "spec": {
            "containers": [
                {
                    "name": app,
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                }
            ],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    }


def workload(kind: str, annotations: dict[str, str] | None = OPT_IN, name: str = "web") -> Any:
    """A strict-schema-valid object of each workload kind around one pod template."""
    tpl = template(annotations, name)
    selector = {"matchLabels": {"app": name}}
    meta = {"name": name, "namespace": "shop"}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            **{**tpl, "metadata": {**meta, **tpl["metadata"]}},
        }
    if kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        spec: dict[str, Any] = {"selector": selector, "template": tpl}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    if kind == "StatefulSet":
        spec = {"serviceName": name, "selector": selector, "template": tpl}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    if kind == "ReplicationController":
        spec = {"selector": {"app": name}, "template": tpl}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": spec}
    tpl["spec"]["restartPolicy"] = "OnFailure"
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": {"template": tpl}}
    assert kind == "CronJob"
    spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": tpl}}}
    return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": spec}


KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("kind", KINDS)
def test_injects_each_workload_kind(tmp_path: Path, kind: str) -> None:
    before = workload(kind)
    validate(before)
    run = run_cli("-f", write(tmp_path, "in.yaml", yaml.safe_dump(before)))
    assert run.code == 0, run.err
    [after] = run.docs()
    validate(after)
    [tpl] = templates(after)
    check_injected(tpl, templates(before)[0])
    # Everything outside the pod template is the user's and stays as it was.
    outside = copy.deepcopy(after)
    for doc, original in ((outside, before),):
        for t_after, t_before in zip(templates(doc), templates(original), strict=True):
            t_after.clear()
            t_after.update(t_before)
    assert outside == before


@pytest.mark.parametrize("kind", KINDS)
def test_namespace_enabled_injects_unannotated_templates(tmp_path: Path, kind: str) -> None:
    before = workload(kind, annotations=None)
    path = write(tmp_path, "in.yaml", yaml.safe_dump(before))
    plain = run_cli("-f", path)
    assert plain.code == 0 and plain.docs() == [before], "no opt-in: unchanged"
    run = run_cli("-f", path, "--namespace-enabled")
    assert run.code == 0, run.err
    [after] = run.docs()
    validate(after)
    check_injected(templates(after)[0], templates(before)[0])


def test_namespace_enabled_respects_opt_out_and_system_namespaces(tmp_path: Path) -> None:
    opted_out = workload("Deployment", {names.INJECT: "false"}, "quiet")
    system = workload("DaemonSet", None, "agent")
    system["metadata"]["namespace"] = "kube-system"
    text = yaml.safe_dump_all([opted_out, system])
    run = run_cli("-f", write(tmp_path, "in.yaml", text), "--namespace-enabled")
    assert run.code == 0
    assert run.out == text, "nothing injected: the input comes out byte for byte"
    assert "kube-system is never injected" in run.err


def test_list_items_are_injected(tmp_path: Path) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    items = [workload("Deployment"), service, workload("Pod", None, "plain"), workload("CronJob")]
    before = {"apiVersion": "v1", "kind": "List", "items": items}
    for output in ("yaml", "json"):
        run = run_cli("-f", write(tmp_path, "list.json", json.dumps(before)), "-o", output)
        assert run.code == 0, run.err
        [after] = run.docs()
        assert after["kind"] == "List"
        validate(after)
        got = after["items"]
        check_injected(templates(got[0])[0], templates(items[0])[0])
        assert got[1] == service
        assert got[2] == items[2], "not opted in"
        check_injected(templates(got[3])[0], templates(items[3])[0])


MULTI = """\
# Shop frontend: everything in one file, as GitOps repositories keep it.
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config   # read by the app at start
data:
  greeting: "hello"
  enabled: 'yes'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2   # two are enough
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels:
        app: web
      annotations:
        logaas/inject: "true"  # ship logs to LogaaS
        logaas/parser: json
    spec:
      containers:
      - name: web
        image: nginx:1.27
        args: ["--port", "8080"]
        ports:
        - containerPort: 8080
        volumeMounts:
        - {name: config, mountPath: /etc/web}
      volumes:
      - name: config
        configMap:
          name: web-config
          defaultMode: 0644   # YAML 1.1 octal, as kubectl reads it
---
# The Service keeps its comments and quoting.
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080   # the container port
"""


def test_multi_document_file_passes_other_kinds_through(tmp_path: Path) -> None:
    path = write(tmp_path, "shop.yaml", MULTI)
    run = run_cli("-f", path)
    assert run.code == 0, run.err
    before = list(yaml.safe_load_all(MULTI))
    after = run.docs()
    assert [d["kind"] for d in after] == ["ConfigMap", "Deployment", "Service"]
    assert after[0] == before[0] and after[2] == before[2]
    for doc in after:
        validate(doc)
    check_injected(templates(after[1])[0], templates(before[1])[0])
    # The documents that did not change come out byte for byte; the injected one keeps the
    # user's comments, flow style and list indentation.
    pieces = MULTI.split("---\n")
    assert run.out.startswith(pieces[0] + "---\n")
    assert run.out.endswith("---\n" + pieces[2])
    for kept in (
        "replicas: 2   # two are enough",
        "matchLabels: {app: web}",
        'logaas/inject: "true"  # ship logs to LogaaS',
        'args: ["--port", "8080"]',
        "      containers:\n      - name: web\n",
        "        - {name: config, mountPath: /etc/web}\n        - name: logaas-logs\n",
    ):
        assert kept in run.out
    assert "logaas/fluent-bit-config: |" in run.out, "the config reads as a block"


def test_idempotent(tmp_path: Path) -> None:
    first = run_cli("-f", write(tmp_path, "a.yaml", MULTI))
    second = run_cli("-f", write(tmp_path, "b.yaml", first.out))
    assert first.code == second.code == 0
    assert second.out == first.out
    as_json = run_cli("-f", str(tmp_path / "a.yaml"), "-o", "json")
    again = run_cli("-f", write(tmp_path, "c.json", as_json.out), "-o", "json")
    assert again.out == as_json.out
    assert json.loads(as_json.out)["kind"] == "List"


def test_several_files_keep_order(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", yaml.safe_dump(workload("Pod", name="one")))
    two = write(tmp_path, "two.yaml", MULTI)
    run = run_cli("-f", one, "-f", two)
    assert run.code == 0
    assert [(d["kind"], d["metadata"]["name"]) for d in run.docs()] == [
        ("Pod", "one"),
        ("ConfigMap", "web-config"),
        ("Deployment", "web"),
        ("Service", "web"),
    ]


def test_json_output(tmp_path: Path) -> None:
    single = run_cli(
        "-f", write(tmp_path, "pod.yaml", yaml.safe_dump(workload("Pod"))), "-o", "json"
    )
    assert single.code == 0
    obj = json.loads(single.out)
    assert obj["kind"] == "Pod" and is_injected(obj)
    validate(obj)
    several = run_cli("-f", write(tmp_path, "shop.yaml", MULTI), "-o", "json")
    listed = json.loads(several.out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [i["kind"] for i in listed["items"]] == ["ConfigMap", "Deployment", "Service"]
    # YAML 1.1 as kubectl reads it: 0644 is octal; the YAML output keeps the user's spelling.
    assert listed["items"][0]["data"] == {"greeting": "hello", "enabled": "yes"}
    volume = listed["items"][1]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["defaultMode"] == 0o644
    assert "defaultMode: 0644   # YAML 1.1 octal" in run_cli("-f", str(tmp_path / "shop.yaml")).out


def test_json_input_yaml_output(tmp_path: Path) -> None:
    before = workload("StatefulSet")
    run = run_cli("-f", write(tmp_path, "sts.json", json.dumps(before, indent=2)))
    assert run.code == 0
    assert not run.out.lstrip().startswith("{"), "YAML out, block style"
    [after] = run.docs()
    check_injected(templates(after)[0], templates(before)[0])


def test_template_without_metadata_gets_one(tmp_path: Path) -> None:
    before = workload("Job", annotations=None)
    del before["spec"]["template"]["metadata"]
    run = run_cli("-f", write(tmp_path, "job.yaml", yaml.safe_dump(before)), "--namespace-enabled")
    assert run.code == 0, run.err
    [after] = run.docs()
    validate(after)
    assert list(after["spec"]["template"]) == ["metadata", "spec"]
    check_injected(after["spec"]["template"], {"spec": before["spec"]["template"]["spec"]})


def test_config_file_is_the_webhooks(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sidecar:\n  image: registry.example/fluent-bit-logaas:3.2.0\n  native: false\n"
        "log_path: /logs\n"
    )
    path = write(tmp_path, "pod.yaml", yaml.safe_dump(workload("Pod")))
    run = run_cli("-f", path, "--config", str(config))
    assert run.code == 0, run.err
    [after] = run.docs()
    validate(after)
    check_injected(after, workload("Pod"), native=False)
    sidecar = after["spec"]["containers"][-1]
    assert sidecar["image"] == "registry.example/fluent-bit-logaas:3.2.0"
    assert after["spec"]["containers"][0]["volumeMounts"][-1]["mountPath"] == "/logs"


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("log_path: relative\n")
    path = write(tmp_path, "pod.yaml", yaml.safe_dump(workload("Pod")))
    run = run_cli("-f", path, "--config", str(config))
    assert run.code == 2 and run.out == ""
    assert "log_path" in run.err and str(config) in run.err
    missing = run_cli("-f", path, "--config", str(tmp_path / "nope.yaml"))
    assert missing.code == 2 and "nope.yaml" in missing.err


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({names.INJECT: "yes"}, names.INJECT),
        ({names.INJECT: "true", names.GROUP_ID: "no spaces allowed"}, names.GROUP_ID),
        ({names.INJECT: "true", names.CONTAINERS: "web,ghost"}, names.CONTAINERS),
        ({names.INJECT: "true", names.LABELS: "[1, 2]"}, names.LABELS),
    ],
)
def test_invalid_annotation_exits_2_naming_file_document_and_annotation(
    tmp_path: Path, annotations: dict[str, str], named: str
) -> None:
    text = MULTI + "---\n" + yaml.safe_dump(workload("Deployment", annotations, "broken"))
    path = write(tmp_path, "apps.yaml", text)
    run = run_cli("-f", path)
    assert run.code == 2
    assert run.out == "", "nothing half-injected reaches the pipeline"
    assert f"{path}: document 4 (Deployment/broken)" in run.err
    assert named in run.err
    assert "Traceback" not in run.err


def test_unquoted_annotation_value_is_reported(tmp_path: Path) -> None:
    text = MULTI.replace('logaas/inject: "true"', "logaas/inject: true")
    run = run_cli("-f", write(tmp_path, "shop.yaml", text))
    assert run.code == 2 and run.out == ""
    assert "document 2 (Deployment/web)" in run.err
    assert "logaas/inject: true is not a string" in run.err


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: {}\n",
        "kind: Pod\nmetadata: [unclosed\n",
        '{"apiVersion": "v1", "kind": "Pod",',
        "\tkind: Pod\n",
    ],
)
def test_unparseable_input_exits_2_with_the_parser_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "broken.yaml", text)
    run = run_cli("-f", path)
    assert run.code == 2 and run.out == ""
    assert run.err.startswith(f"error: {path}: not valid YAML or JSON")
    assert "line" in run.err
    assert "Traceback" not in run.err


def test_missing_file_exits_2(tmp_path: Path) -> None:
    run = run_cli("-f", str(tmp_path / "absent.yaml"))
    assert run.code == 2 and "absent.yaml: cannot read" in run.err


def test_stdin_in_process() -> None:
    run = run_cli("-f", "-", stdin=yaml.safe_dump(workload("Deployment")))
    assert run.code == 0
    check_injected(templates(run.docs()[0])[0], templates(workload("Deployment"))[0])


def _console(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    return subprocess.run(
        [str(CLI), "inject", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_console_script_reads_stdin() -> None:
    proc = _console("-f", "-", "-o", "json", stdin=MULTI)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    deployment = listed["items"][1]
    validate(deployment)
    assert is_injected(deployment["spec"]["template"])


def test_console_script_exit_code_and_message_on_bad_input() -> None:
    proc = _console("-f", "-", stdin="kind: Pod\nmetadata: [unclosed\n")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: <stdin>: not valid YAML or JSON")
    assert "Traceback" not in proc.stderr
    bad = MULTI.replace('logaas/inject: "true"', 'logaas/inject: "maybe"')
    proc = _console("-f", "-", stdin=bad)
    assert proc.returncode == 2
    assert "<stdin>: document 2 (Deployment/web)" in proc.stderr
    assert "logaas/inject" in proc.stderr and "'maybe'" in proc.stderr


def test_help_lists_inject() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "inject", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0
    assert "--namespace-enabled" in proc.stdout and "--filename" in proc.stdout


def test_the_charts_settings_drive_offline_injection(tmp_path: Path) -> None:
    """`--config` takes the settings file the chart gives the webhook (real helm)."""
    helm = ROOT / ".tools" / "bin" / "helm"
    rendered = subprocess.run(
        [
            str(helm if helm.is_file() else "helm"),
            "template",
            "logaas-webhook",
            str(ROOT / "charts" / "logaas-webhook"),
            "-n",
            "logaas",
            "--set",
            "sidecar.image.repository=registry.example/fluent-bit-logaas",
            "--set",
            "logaas.groupId=shop-logs",
            "--set",
            "logaas.projectId=shop-project",
            "--set",
            "credentials.existingSecret=logaas-credentials",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    [configmap] = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})
    ]
    config = tmp_path / "config.yaml"
    config.write_text(configmap["data"]["config.yaml"])
    path = write(tmp_path, "deploy.yaml", yaml.safe_dump(workload("Deployment")))
    run = run_cli("-f", path, "--config", str(config))
    assert run.code == 0, run.err
    [after] = run.docs()
    validate(after)
    [tpl] = templates(after)
    check_injected(tpl, templates(workload("Deployment"))[0])
    sidecar = tpl["spec"]["initContainers"][-1]
    assert sidecar["image"].startswith("registry.example/fluent-bit-logaas:")
    assert (
        "default_group_id         shop-logs"
        in tpl["metadata"]["annotations"][names.FLUENT_BIT_CONFIG]
    )
    # The webhook's own namespace is never injected, offline either.
    own = workload("Pod")
    own["metadata"]["namespace"] = "logaas"
    run = run_cli("-f", write(tmp_path, "own.yaml", yaml.safe_dump(own)), "--config", str(config))
    assert run.code == 0 and run.docs() == [own]


def test_a_directory_reads_its_manifests_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(workload("Pod", name="second")))
    (tmp_path / "a.json").write_text(json.dumps(workload("Job", name="first")))
    (tmp_path / "notes.txt").write_text("not a manifest: {")
    run = run_cli("-f", str(tmp_path))
    assert run.code == 0, run.err
    assert [(d["kind"], d["metadata"]["name"]) for d in run.docs()] == [
        ("Job", "first"),
        ("Pod", "second"),
    ]
    assert all(is_injected(templates(d)[0]) for d in run.docs())


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(workload("Pod")).encode())
    assert run_cli("-f", str(path)).code == 0
    assert run_cli("-f", "-", stdin="\ufeff" + yaml.safe_dump(workload("Pod"))).code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
                for p, n in zip("abcdefg", "bcdefgh", strict=True)
            ),
            "expands to more than",
        ),
        ('{"x":' * 300 + "1" + "}" * 300, "nested deeper than"),
        ("a: " + "[" * 5000 + "]" * 5000, "not valid YAML or JSON"),
    ],
    ids=["alias-bomb", "deep-json", "deep-yaml"],
)
def test_hostile_input_is_refused_quickly(tmp_path: Path, text: str, message: str) -> None:
    run = run_cli("-f", write(tmp_path, "x.yaml", text))
    assert run.code == 2 and run.out == ""
    assert message in run.err and "Traceback" not in run.err


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    big = yaml.safe_dump_all([workload("Deployment", name=f"d{i}") for i in range(30)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    proc = subprocess.Popen(
        [str(CLI), "inject", "-f", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(big.encode())
    proc.stdin.close()
    assert proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=60)
    assert b"Traceback" not in proc.stderr.read()


def test_namespace_flag_places_unnamespaced_documents(tmp_path: Path) -> None:
    """-n decides exclusions and the group policy for documents without a namespace."""
    config = tmp_path / "config.yaml"
    config.write_text("group_policy:\n  team-a: [team-a-logs]\n")
    pod = workload("Pod", {names.INJECT: "true", names.GROUP_ID: "other-logs"})
    del pod["metadata"]["namespace"]
    path = write(tmp_path, "pod.yaml", yaml.safe_dump(pod))
    assert run_cli("-f", path, "--config", str(config)).code == 0, "no namespace: no policy"
    refused = run_cli("-f", path, "--config", str(config), "-n", "team-a")
    assert refused.code == 2 and "other-logs" in refused.err and "team-a" in refused.err
    skipped = run_cli("-f", path, "-n", "kube-system")
    assert skipped.code == 0 and skipped.docs() == [pod]
    assert "kube-system is never injected" in skipped.err
    # A namespace the document names wins over -n.
    pod["metadata"]["namespace"] = "shop"
    named = run_cli("-f", write(tmp_path, "named.yaml", yaml.safe_dump(pod)), "-n", "kube-system")
    assert named.code == 0 and is_injected(named.docs()[0])


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = MULTI.replace("\n", "\r\n")
    path = tmp_path / "crlf.yaml"
    path.write_bytes(text.encode())
    run = run_cli("-f", str(path))
    assert run.code == 0
    assert run.out.count("\r\n") == run.out.count("\n"), "no bare LF"
    after, before = run.docs(), list(yaml.safe_load_all(MULTI))
    assert [d["kind"] for d in after] == ["ConfigMap", "Deployment", "Service"]
    assert (after[0], after[2]) == (before[0], before[2])
    check_injected(templates(after[1])[0], templates(before[1])[0])
    assert "# Shop frontend" in run.out and "replicas: 2   # two are enough" in run.out
    again = tmp_path / "again.yaml"
    again.write_bytes(run.out.encode())
    assert run_cli("-f", str(again)).out == run.out
