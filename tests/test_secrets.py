"""No credential value ever leaves through anything the webhook produces.

Unique secret values are seeded everywhere a careless webhook could pick one up: the webhook
process's own environment (the env var names the sidecar uses), the user's container env, a
Secret object sent for review, annotations and labels of the pod, malformed reviews. Then every
byte produced is searched, raw, base64- and JSON-escaped: responses (patches decoded),
warnings, denial and HTTP error messages, the JSON log, /metrics. The only credential
references allowed in what the webhook writes are secretKeyRef env vars and ${VAR} in the
Fluent Bit config; the DaemonSet renders the same way.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import admission_review, pod
from tests.harness import Server, check_answer, decode_patch, serve
from webhook import fluentbit, names
from webhook.daemonset.render import render_objects, to_yaml
from webhook.mutation import NamespaceInfo
from webhook.settings import load_settings

SEEDS = {what: f"SEKRET{what.upper()}{uuid.uuid4().hex}" for what in (
    "env_id", "env_secret", "process", "container_env", "secret_data", "secret_string",
    "annotation", "label", "bad_review", "bad_uid", "labels_value", "config_env",
)}  # fmt: skip


def forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(raw)[:20], json.dumps(value).encode()]


def leaks(blob: bytes) -> list[str]:
    return [what for what, seed in SEEDS.items() for form in forms(seed) if form in blob]


@pytest.fixture(scope="module")
def server(cert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        names.ENV_CLIENT_ID: SEEDS["env_id"],
        names.ENV_CLIENT_SECRET: SEEDS["env_secret"],
        "LOGAAS_CLIENT_SECRET": SEEDS["process"],
    }
    tmp = tmp_path_factory.mktemp("secrets")
    with serve(cert_dir, tmp, env=env, args=["--log-level", "DEBUG"]) as running:
        yield running


def _reviews() -> list[tuple[str, bytes, str | None]]:
    """(path, body, uid): injected, denied, skipped, malformed, non-pod reviews."""
    secret_pod = pod(
        {
            names.INJECT: "true",
            "example.com/token": SEEDS["annotation"],
            names.LABELS: json.dumps({"team": "a"}),
        },
        spec={
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "env": [{"name": "DB_PASSWORD", "value": SEEDS["container_env"]}],
                }
            ]
        },
    )
    secret_pod["metadata"]["labels"] = {"token": SEEDS["label"]}
    denied_pod = pod({names.INJECT: "true", names.GROUP_ID: "bad group!"})
    denied_pod["spec"]["containers"][0]["env"] = [
        {"name": "API_KEY", "value": SEEDS["container_env"]}
    ]
    secret_object = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "logaas-credentials", "namespace": "shop"},
        "data": {"client-secret": base64.b64encode(SEEDS["secret_data"].encode()).decode()},
        "stringData": {"client-id": SEEDS["secret_string"]},
    }
    out: list[tuple[str, bytes, str | None]] = []
    for path in ("/mutate", "/mutate/namespace"):
        for i, obj in enumerate([secret_pod, denied_pod, pod({names.INJECT: "false"})]):
            review = admission_review(obj, uid=f"{path}-{i}")
            out.append((path, json.dumps(review).encode(), f"{path}-{i}"))
        review = admission_review(
            secret_object, uid=f"{path}-secret", kind="Secret", resource="secrets"
        )
        out.append((path, json.dumps(review).encode(), f"{path}-secret"))
        # Malformed reviews whose bad fields carry secrets: the 400 must not echo them.
        bad = admission_review(secret_pod, uid=f"{path}-bad")
        bad["request"]["operation"] = {"value": SEEDS["bad_review"]}
        bad["request"]["kind"] = SEEDS["bad_review"]
        out.append((path, json.dumps(bad).encode(), None))
        bad_uid = admission_review(secret_pod, uid=SEEDS["bad_uid"] * 10)
        out.append((path, json.dumps(bad_uid).encode(), None))
        out.append((path, SEEDS["bad_review"].encode(), None))
        out.append((path, b'{"apiVersion": "' + SEEDS["bad_review"].encode() + b'"}', None))
    return out


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}/{index}")


SENSITIVE = re.compile(r"(secret|password|passwd|token|credential|api[_-]?key|client[_-]?id)", re.I)


def assert_only_references(env: list[Any], config: str | None = None) -> None:
    """Credential env vars come from secretKeyRef (optional); the config names them as ${VAR}."""
    settings = load_settings()
    creds = {names.ENV_CLIENT_ID: "client-id", names.ENV_CLIENT_SECRET: "client-secret"}
    by_name = {e["name"]: e for e in env}
    for var, key in creds.items():
        assert by_name[var] == {
            "name": var,
            "valueFrom": {
                "secretKeyRef": {
                    "name": settings.credentials.secret_name,
                    "key": key,
                    "optional": True,
                }
            },
        }
    for entry in env:
        assert "value" not in entry or not SENSITIVE.search(entry["name"]), entry
    if config is not None:
        for _, pairs in fluentbit.parse(config):
            for key, value in pairs:
                if SENSITIVE.search(key):
                    assert re.fullmatch(r"\$\{[A-Z_]+\}", value), (key, value)
                    assert value[2:-1] in creds


def test_nothing_produced_contains_a_secret(server: Server) -> None:
    produced: list[tuple[str, bytes]] = []
    injected = 0
    with server.client(timeout=10) as client:
        for path, body, uid in _reviews():
            answer = client.post(path, content=body)
            assert answer.status_code < 500
            response = check_answer(answer.status_code, answer.content, uid)
            produced.append((f"{path} {uid} HTTP {answer.status_code}", answer.content))
            if response is None:
                continue
            produced.append((f"{path} {uid} warnings", json.dumps(response).encode()))
            ops = decode_patch(response)
            if not ops:
                continue
            injected += 1
            patch_text = json.dumps(ops, ensure_ascii=False).encode()
            produced.append((f"{path} {uid} patch", patch_text))
            sidecar = next(
                c
                for op in ops
                for c in (op["value"] if isinstance(op["value"], list) else [op["value"]])
                if isinstance(c, dict) and c.get("name") == names.SIDECAR_CONTAINER
            )
            configs = [
                op["value"] for op in ops if op["path"].endswith("logaas~1fluent-bit-config")
            ]
            assert len(configs) == 1
            assert_only_references(sidecar["env"], configs[0])
            assert "envFrom" not in sidecar
            # No Secret volume, no projected token: only env refs to the one Secret.
            refs = [p for p, v in _walk(ops) if p.endswith("secretKeyRef")]
            assert len(refs) == 2
            assert not [p for p, _ in _walk(ops) if p.endswith(("/secret", "/projected"))]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        produced.append(("metrics", metrics.content))
    assert injected == 2
    produced.append(("log", server.log_path.read_bytes()))
    assert b'"uid":"/mutate-0"' in produced[-1][1], "the review log was captured"
    found = {where: leaks(blob) for where, blob in produced if leaks(blob)}
    assert found == {}


def test_denials_name_the_annotation_not_unrelated_values(server: Server) -> None:
    """An invalid logaas/* annotation is quoted back (the user wrote it there), but nothing else
    of the pod: not its env, other annotations or labels."""
    bad = pod({names.INJECT: "true", names.PROJECT_ID: "no spaces", "x/token": SEEDS["annotation"]})
    bad["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": SEEDS["container_env"]}]
    with server.client(timeout=10) as client:
        answer = client.post("/mutate", json=admission_review(bad, uid="deny"))
    response = check_answer(answer.status_code, answer.content, "deny")
    assert response is not None and response["allowed"] is False
    assert names.PROJECT_ID in response["status"]["message"]
    assert "'no spaces'" in response["status"]["message"]
    assert leaks(answer.content) == []


def test_settings_cannot_hold_a_credential_value() -> None:
    """The webhook's settings name the Secret and its keys, never a value: a value-looking
    setting is refused, and the sidecar reads credentials only from the Secret."""
    with pytest.raises(ValueError, match="client_secret"):
        load_settings(credentials={"client_secret": SEEDS["config_env"]})
    with pytest.raises(ValueError):
        load_settings(iam_client_secret=SEEDS["config_env"])
    fields = set(load_settings().credentials.model_dump())
    assert fields == {"secret_name", "client_id_key", "client_secret_key", "synced"}


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "1"], ["daemonset", "render"], ["inject", "-f", "-"]],
    ids=["serve", "daemonset", "inject"],
)
@pytest.mark.parametrize("where", ["env", "file"])
def test_misplaced_credential_is_refused_without_echoing_it(
    command: list[str], where: str, tmp_path: Path
) -> None:
    """A credential put into the settings by mistake stops the command; the error names the
    setting, never the value (pydantic's default message would print it)."""
    import subprocess
    import sys

    value = SEEDS["config_env"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    args = list(command)
    if where == "env":
        env["LOGAAS_CREDENTIALS__CLIENT_SECRET_VALUE"] = value
        env["LOGAAS_GROUP_ID"] = value + " x"
    else:
        config = tmp_path / "config.yaml"
        config.write_text(f"credentials:\n  client_secret: {value}\ngroup_id: '{value} x'\n")
        args += ["--config", str(config)]
    proc = subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args],
        input=b"", capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert b"client_secret" in output and b"group_id" in output
    assert leaks(output) == []


def test_daemonset_renders_only_references() -> None:
    settings = load_settings()
    namespaces = [
        NamespaceInfo("shop", annotations={names.GROUP_ID: "shop-logs"}),
        NamespaceInfo("team", labels={names.INJECT: names.NS_ENABLED}),
    ]
    objects, _ = render_objects(settings, namespaces)
    text = to_yaml(objects)
    assert not [o for o in objects if o.get("kind") == "Secret"]
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    for container in daemonset["spec"]["template"]["spec"]["containers"]:
        assert_only_references(container["env"])
        assert "envFrom" not in container
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    for name, config in config_map["data"].items():
        if name.endswith(".conf") and "[OUTPUT]" in config:
            for _, pairs in fluentbit.parse(config):
                for key, value in pairs:
                    if SENSITIVE.search(key):
                        assert value in ("${LOGAAS_IAM_CLIENT_ID}", "${LOGAAS_IAM_CLIENT_SECRET}")
    assert "${LOGAAS_IAM_CLIENT_SECRET}" in text
