"""`logaas-webhook inject`: add the sidecar to manifests before they reach a cluster (GitOps).

Like `istioctl kube-inject` and `linkerd inject`: reads YAML or JSON (files or `-` for stdin),
prints every document in order, with the sidecar added to each pod template that opts in.
Same engine and settings as the webhook. Exit codes: 0 done, 2 bad input or annotation
(nothing is printed to stdout then, so a pipeline never applies half a result).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webhook.offline import (
    Document,
    InputError,
    OfflineInjector,
    errors,
    inject_text,
    render_json,
    render_yaml,
    warnings,
)
from webhook.settings import load_settings, settings_problem

EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inject",
        help="add the logaas sidecar to manifests offline (GitOps)",
        description=(
            "Print the manifests with the Fluent Bit sidecar added to every pod template that "
            "opts in (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, List). "
            "Other documents pass through unchanged. Exit code 2 on invalid input."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help=(
            "manifest file or directory (YAML or JSON, one or many documents); '-' reads "
            "stdin; repeatable"
        ),
    )
    parser.add_argument(
        "--namespace-enabled",
        action="store_true",
        help=(
            "act as if the namespace were labelled logaas/inject=enabled: inject every pod "
            'template unless it is annotated logaas/inject: "false"'
        ),
    )
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help=(
            "namespace of documents that name none (as with kubectl apply -n); decides "
            "exclusions and the log-group policy"
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="webhook settings file (YAML), the same the webhook runs with",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="output format (json: one object, or a v1 List for several documents)",
    )
    parser.set_defaults(func=run)


def _fail(messages: list[str]) -> int:
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _sources(name: str) -> list[str]:
    """A file, `-`, or (like kubectl -f) a directory's .yaml/.yml/.json files in name order."""
    path = Path(name)
    if name != "-" and path.is_dir():
        return [
            str(p) for p in sorted(path.iterdir()) if p.is_file() and p.suffix in MANIFEST_SUFFIXES
        ]
    return [name]


def _read(name: str) -> str:
    """The text as it is, line endings included (a CRLF file stays CRLF)."""
    if name == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        return stdin.read().decode("utf-8-sig") if stdin is not None else sys.stdin.read()
    with open(name, encoding="utf-8-sig", newline="") as handle:
        return handle.read()


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ValidationError as err:
        return _fail([f"settings {args.config or '(defaults)'}: {settings_problem(err)}"])
    except (OSError, ValueError) as err:
        return _fail([f"settings {args.config or '(defaults)'}: {err}"])
    injector = OfflineInjector(
        settings, namespace_enabled=args.namespace_enabled, namespace=args.namespace
    )

    documents: list[Document] = []
    problems: list[str] = []
    for name in (source for arg in args.filename for source in _sources(arg)):
        source = "<stdin>" if name == "-" else name
        try:
            text = _read(name)
        except (OSError, UnicodeDecodeError) as err:
            problems.append(f"{source}: cannot read: {err}")
            continue
        try:
            found = inject_text(text, source, injector)
        except InputError as err:
            problems.append(str(err))
            continue
        problems.extend(errors(found))
        documents.extend(found)
    if problems:
        return _fail(problems)
    for warning in warnings(documents):
        print(f"Warning: {warning}", file=sys.stderr)
    try:
        output = render_json(documents) if args.output == "json" else render_yaml(documents)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps inputs well below this
        return _fail(["input nested too deeply to write back"])
    return _write(output)
