"""Test inputs shared by the workplace, outside this repository (never copied into it).

The Kubernetes docs' example workloads (CC BY 4.0) are read in place from `../shared/corpus`
next to the checkout, or from TEST_SHARED_DIR. Tests that need them are skipped, with the
reason shown, on a machine that has no copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
