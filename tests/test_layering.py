"""The layering, written down: the pure core imports no HTTP framework and no Kubernetes client.

Checked on the import graph of the source (module-level and function-level imports alike),
followed through the package, so a helper that drags in FastAPI breaks this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "webhook"
EDGES = ("fastapi", "starlette", "uvicorn", "kubernetes", "httpx", "prometheus_client")
# The engine and everything the offline tool and the renderer share with the webhook.
PURE = (
    "webhook.mutation",
    "webhook.annotations",
    "webhook.sidecar",
    "webhook.sidecar_config",
    "webhook.fluentbit",
    "webhook.settings",
    "webhook.names",
    "webhook.offline",
    "webhook.daemonset.routing",
    "webhook.daemonset.agentconf",
    "webhook.daemonset.render",
    "webhook.daemonset.coverage",
)


def _imports(module: str) -> set[str]:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imports(current):
            if name.startswith("webhook") and _exists(name):
                todo.append(name)
            elif not name.startswith("webhook"):
                seen.add(name)
    return seen


def _exists(module: str) -> bool:
    base = PACKAGE.parent / module.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@pytest.mark.parametrize("module", PURE)
def test_pure_core_imports_no_edge(module: str) -> None:
    assert _exists(module), module
    leaked = sorted(name for name in _closure(module) if name.split(".")[0] in EDGES)
    assert leaked == [], f"{module} reaches {leaked}"


def test_the_check_sees_an_edge() -> None:
    assert any(n.split(".")[0] == "fastapi" for n in _closure("webhook.app"))
    assert any(n.split(".")[0] == "kubernetes" for n in _closure("webhook.nscache"))
