"""Real Kubernetes parts for tests: kube-apiserver's JSON patch semantics and strict schemas."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import Registry, Resource, all_versions, schema_contents

# 1.29 is the first release with native sidecars on by default; the other is the newest shipped.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version().rsplit(".", 1)[0])


@functools.cache
def tool(name: str) -> str:
    """helm or kubectl: the pinned binary `make tools` installs, else one on PATH."""
    local = Path(__file__).resolve().parent.parent / ".tools" / "bin" / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make tools`")
    return found


def kubectl() -> str:
    return tool("kubectl")


class PatchError(AssertionError):
    pass


def kubectl_patch(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply an RFC 6902 patch the way kube-apiserver does (evanphx/json-patch via kubectl)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "obj.json")
        ops = Path(tmp, "patch.json")
        src.write_text(json.dumps(obj))
        ops.write_text(json.dumps(patch))
        proc = subprocess.run(
            [
                kubectl(),
                "patch",
                "--local",
                "--type=json",
                "-f",
                str(src),
                "--patch-file",
                str(ops),
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if proc.returncode != 0:
        raise PatchError(f"kubectl patch failed: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class SchemaError(AssertionError):
    pass


@functools.cache
def validator(kind: str, api_version: str, version: str) -> jsonschema.Validator | None:
    """kubernetes-validate's strict schema for one kind and release, built once (its
    validate() re-reads the multi-megabyte definitions file on every call); None when the
    release has no schema for the kind."""
    full = [v for v in all_versions() if v.rsplit(".", 1)[0] == version][-1]
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    root = f"kubernetes-json-schema/v{full}-local-strict"
    try:
        schema = schema_contents(f"{root}/{kind.lower()}-{group_version}.json", full)
    except FileNotFoundError:
        return None
    definitions = schema_contents(f"{root}/_definitions.json", full)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    checker: jsonschema.Validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return checker


def schema_errors(obj: dict[str, Any], version: str) -> set[tuple[str, str]] | None:
    """Every strict-schema error of obj as (path, message); None when no schema has the kind."""
    checker = validator(str(obj.get("kind")), str(obj.get("apiVersion")), version)
    if checker is None:
        return None
    return {
        ("/".join(str(p) for p in e.absolute_path), e.message) for e in checker.iter_errors(obj)
    }


def validate_strict(obj: dict[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> None:
    """Raise unless obj is valid under Kubernetes' own schema, strict (no unknown fields)."""
    for version in versions:
        errors = schema_errors(obj, version)
        if errors is None:
            raise SchemaError(f"no {version} schema for {obj.get('apiVersion')}/{obj.get('kind')}")
        if errors:
            raise SchemaError(f"invalid for Kubernetes {version}: {sorted(errors)[:5]}")


def validate_as_input(original: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Validate result for every version the original is valid for; return those versions.

    Example manifests use fields newer than 1.29 (pod-level resources, recursiveReadOnly...):
    a patched object must be valid wherever its input was. Where the input is valid for no
    version (alpha fields), the result may carry the input's errors and no new ones.
    """
    versions = []
    for version in K8S_VERSIONS:
        if schema_errors(original, version) == set():
            validate_strict(result, (version,))
            versions.append(version)
    if not versions:
        newest = K8S_VERSIONS[-1]
        new = (schema_errors(result, newest) or set()) - (schema_errors(original, newest) or set())
        assert not new, f"injection added schema errors: {new}"
    return versions
