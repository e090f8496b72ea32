"""Test inputs shared by the workplace, outside this repository (never copied into it).

The Kubernetes docs' example workloads (CC BY 4.0) are read in place from `../shared/corpus`
next to the checkout, or from TEST_SHARED_DIR. Tests that need them are skipped, with the
reason shown, on a machine that has no copy.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path | None:
    candidates = [os.environ.get("TEST_SHARED_DIR"), ROOT.parent / "shared", "/work/shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "corpus" / "k8s-website-examples").is_dir():
            return Path(candidate)
    return None


SHARED = _shared_dir()
CORPUS = (SHARED or ROOT.parent / "shared") / "corpus" / "k8s-website-examples"
CORPUS_FILES = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.yaml"))
requires_corpus = pytest.mark.skipif(
    SHARED is None, reason="the shared corpus (../shared/corpus) is not on this machine"
)


def corpus_pods(opt_in: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Every Pod and pod template of the corpus as a v1 Pod: (file, pod), in file order."""
    from webhook import names
    from webhook.offline import find_templates, pod_of, resolve

    found = []
    for name in CORPUS_FILES:
        for doc in yaml.safe_load_all((CORPUS / name).read_text()):
            for target in find_templates(doc):
                pod = pod_of(copy.deepcopy(resolve(doc, target.pointer)))
                if opt_in:
                    meta = pod.setdefault("metadata", {})
                    meta.setdefault("annotations", {})[names.INJECT] = "true"
                found.append((name, pod))
    return found
