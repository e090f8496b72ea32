"""Real Kubernetes parts for tests: kube-apiserver's JSON patch semantics and strict schemas."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate

# 1.29 is the first release with native sidecars on by default; the other is the newest shipped.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version().rsplit(".", 1)[0])


@functools.cache
def kubectl() -> str:
    root = Path(__file__).resolve().parent.parent
    local = root / ".tools" / "bin" / "kubectl"
    if local.is_file():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: run `make tools`")
    return found


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


def validate_strict(obj: dict[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> None:
    """Raise if obj is not valid under Kubernetes' own schema, strict (no unknown fields)."""
    for version in versions:
        kubernetes_validate.validate(obj, version, strict=True)
