"""Every pod template of the Kubernetes docs' example workloads, through the webhook over HTTP.

The corpus (../shared/corpus, CC BY 4.0) is read in place as test input; nothing is copied.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.builders import admission_review
from tests.kube import kubectl_patch, validate_as_input
from tests.shared import CORPUS, CORPUS_FILES, requires_corpus
from webhook.app import create_app
from webhook.mutation import targets_windows
from webhook.offline import find_templates, pod_of, resolve
from webhook.settings import load_settings

FILES = CORPUS_FILES

pytestmark = [pytest.mark.anyio, requires_corpus]


def pods_in(path: Path) -> list[dict[str, Any]]:
    pods = []
    for doc in yaml.safe_load_all(path.read_text()):
        for target in find_templates(doc):
            obj = pod_of(copy.deepcopy(resolve(doc, target.pointer)))
            meta = obj.setdefault("metadata", {})
            # What kube-apiserver hands the webhook: namespace set, controller pods unnamed.
            meta["namespace"] = "corpus"
            if target.kind != "Pod":
                meta.pop("name", None)
                meta["generateName"] = f"{target.name}-"
            pods.append(obj)
    return pods


def test_corpus_is_there() -> None:
    assert len(FILES) == 179


@pytest.mark.parametrize("name", FILES)
async def test_corpus_pod_injects_through_the_webhook(name: str) -> None:
    app = create_app(load_settings())
    pods = pods_in(CORPUS / name)
    assert pods, f"{name} has no pod template"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://w") as c:
        for obj in pods:
            resp = await c.post("/mutate/namespace", json=admission_review(obj, namespace="corpus"))
            assert resp.status_code == 200
            response = resp.json()["response"]
            assert response["allowed"] is True, response
            spec = obj["spec"]
            if targets_windows(spec) or spec.get("hostNetwork"):
                # Documented skips: a Linux sidecar cannot run on Windows nodes; hostNetwork
                # pods are opt-in by cluster setting. The user is told why.
                assert "patch" not in response and response["warnings"]
                continue
            patch = json.loads(base64.b64decode(response["patch"]))
            result = kubectl_patch(obj, patch)
            validate_as_input(obj, result)
            assert result["metadata"]["annotations"]["logaas/status"] == "injected"
