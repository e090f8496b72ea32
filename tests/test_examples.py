"""The shipped examples work: the log generator, its manifests, and the sample AdmissionReview."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from tests.kube import kubectl_patch, validate_strict
from tests.offline_checks import check_injected, run_cli, templates
from tests.test_engine import assert_contract
from webhook import fluentbit, names
from webhook.app import create_app
from webhook.mutation import Injector, Mode
from webhook.settings import load_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GENERATOR = EXAMPLES / "generator.py"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LEVELS = {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_generator", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def check_line(line: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(line)
    assert set(entry) == {"timestamp", "level", "labels", "message"}
    assert TIMESTAMP.match(entry["timestamp"]), entry["timestamp"]
    assert entry["level"] in LEVELS
    assert {"app", "host", "pid", "random"} <= set(entry["labels"])
    assert isinstance(entry["message"], str) and entry["message"]
    assert "{" not in entry["message"], "every template placeholder is filled"
    return entry


def log_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("app.log*"))


def test_generator_writes_json_lines_and_rotates_by_size(
    generator: ModuleType, tmp_path: Path
) -> None:
    config = generator.Config(
        log_dir=tmp_path / "logs",
        max_bytes=4000,
        backup_count=100,
        count=300,
        interval_min=0,
        interval_max=0,
        http_port=0,
    )
    written = generator.run(config, threading.Event(), seed=7)
    assert written == 300
    files = log_files(tmp_path / "logs")
    assert len(files) > 5, "rotated several times"
    assert {f.name for f in files} == {"app.log", *(f"app.log.{i}" for i in range(1, len(files)))}
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 300, "nothing lost across rotations"
    entries = [check_line(line) for line in lines]
    assert len({e["level"] for e in entries}) == len(LEVELS)
    for f in files:
        assert f.stat().st_size <= 4000


def test_generator_keeps_only_backup_count_files(generator: ModuleType, tmp_path: Path) -> None:
    config = generator.Config(
        log_dir=tmp_path, max_bytes=1000, backup_count=2, count=100, interval_max=0, http_port=0
    )
    generator.run(config, threading.Event(), seed=1)
    assert [f.name for f in log_files(tmp_path)] == ["app.log", "app.log.1", "app.log.2"]
    # Rotated copies do not match the sidecar's default glob, so no line is shipped twice.
    assert [f.name for f in tmp_path.glob("*.log")] == ["app.log"]


def test_generator_configuration_from_env(generator: ModuleType) -> None:
    config = generator.Config.from_env(
        {"LOG_DIR": "/data/logs", "LOG_MAX_BYTES": "123", "APP_NAME": "shop", "LOG_COUNT": "5"}
    )
    assert (config.log_path, config.max_bytes, config.app_name, config.count) == (
        Path("/data/logs/app.log"),
        123,
        "shop",
        5,
    )
    assert generator.Config.from_env({}).log_path == Path("/var/log/app/app.log")
    for bad in ({"LOG_INTERVAL_MIN": "3", "LOG_INTERVAL_MAX": "1"}, {"LOG_FILE": "a/b.log"}):
        with pytest.raises(ValueError):
            generator.Config.from_env(bad)


def _env(**values: str) -> dict[str, str]:
    return {**os.environ, "LOG_INTERVAL_MIN": "0", "LOG_INTERVAL_MAX": "0", **values}


def test_generator_script_writes_the_same_lines_to_stdout_and_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR)],
        env=_env(LOG_DIR=str(tmp_path), LOG_COUNT="20", HTTP_PORT="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 20
    for line in out:
        check_line(line)
    assert (tmp_path / "app.log").read_text().splitlines() == out


def test_generator_runs_on_stdout_when_the_log_dir_is_unwritable(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    proc = subprocess.run(
        [sys.executable, str(GENERATOR)],
        env=_env(LOG_DIR=str(blocked / "logs"), LOG_COUNT="3", HTTP_PORT="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 3
    assert "stdout only" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_generator_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(GENERATOR)],
        env=_env(LOG_DIR=str(tmp_path), HTTP_PORT=str(port), LOG_INTERVAL_MAX="0.05"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except (OSError, http.client.HTTPException):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "health endpoint never answered"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "app.log").read_text().strip(), "it logged while running"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


def test_example_deployment_injects_into_a_valid_deployment() -> None:
    before = _load("deployment.yaml")
    validate_strict(before)
    tpl = before["spec"]["template"]
    assert tpl["metadata"]["annotations"][names.INJECT] == "true"
    run = run_cli("-f", str(EXAMPLES / "deployment.yaml"))
    assert run.code == 0, run.err
    [after] = run.docs()
    validate_strict(after)
    injected = templates(after)[0]
    check_injected(injected, tpl)
    # The sidecar reads where the generator writes, and parses its JSON lines.
    app = injected["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in app["env"]}
    mount = next(m for m in app["volumeMounts"] if m["name"] == names.LOGS_VOLUME)
    assert mount["mountPath"] == env["LOG_DIR"]
    config = injected["metadata"]["annotations"][names.FLUENT_BIT_CONFIG]
    parsers = [dict(p) for s, p in fluentbit.parse(config) if s == "FILTER"]
    assert any(p.get("Name") == "parser" and p.get("Parser") == "json" for p in parsers)
    assert "# The generator writes one JSON object per line." in run.out, "comments survive"


def test_example_service_selects_the_deployment() -> None:
    service, deployment = _load("service.yaml"), _load("deployment.yaml")
    validate_strict(service)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {
        p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def review() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / "admission-review.json").read_text())
    return loaded


def test_admission_review_is_shaped_like_kube_apiservers() -> None:
    body = review()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    request = body["request"]
    assert set(request) == {
        "uid", "kind", "resource", "requestKind", "requestResource", "namespace",
        "operation", "userInfo", "object", "oldObject", "dryRun", "options",
    }  # fmt: skip
    assert "name" not in request, "omitempty: a generateName pod has no name yet"
    assert re.match(r"^[0-9a-f-]{36}$", request["uid"])
    assert (
        request["kind"] == request["requestKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    )
    assert (
        request["resource"]
        == request["requestResource"]
        == {
            "group": "",
            "version": "v1",
            "resource": "pods",
        }
    )
    assert (request["operation"], request["oldObject"], request["dryRun"]) == (
        "CREATE",
        None,
        False,
    )
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert request["userInfo"]["username"].startswith("system:serviceaccount:")
    obj = request["object"]
    assert obj["metadata"]["generateName"] and "name" not in obj["metadata"]
    assert obj["metadata"]["namespace"] == request["namespace"]
    validate_strict(obj)
    # It is the example Deployment's pod, as the ReplicaSet controller creates it.
    tpl = _load("deployment.yaml")["spec"]["template"]
    assert obj["metadata"]["annotations"] == tpl["metadata"]["annotations"]
    assert obj["metadata"]["labels"].items() >= tpl["metadata"]["labels"].items()


def test_admission_review_object_is_injected_by_the_engine() -> None:
    request = review()["request"]
    decision = Injector(load_settings()).decide(request["object"], Mode.POD, request["namespace"])
    assert decision.outcome == "injected", decision
    result = kubectl_patch(request["object"], decision.patch)
    validate_strict(result)
    assert_contract(result)


@pytest.mark.anyio
async def test_webhook_and_offline_inject_the_example_pod_the_same_way(tmp_path: Path) -> None:
    """Same engine, same settings: the webhook's patch and `inject -f` give the same pod."""
    body = review()
    app = create_app(load_settings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://webhook"
    ) as client:
        resp = await client.post("/mutate", json=body)
    assert resp.status_code == 200
    response = resp.json()["response"]
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    online = kubectl_patch(body["request"]["object"], patch)

    path = tmp_path / "pod.json"
    path.write_text(json.dumps(body["request"]["object"]))
    run = run_cli("-f", str(path), "-o", "json")
    assert run.code == 0, run.err
    offline = json.loads(run.out)
    # kubectl prints objects without managedFields; offline keeps the user's object whole.
    managed = offline["metadata"].pop("managedFields")
    assert managed == body["request"]["object"]["metadata"]["managedFields"]
    assert offline == online
