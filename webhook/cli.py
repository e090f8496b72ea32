"""The `logaas-webhook` command line: a thin edge over the modules that do the work.

Each command group lives in its own module with `register(subparsers)`; the handler it sets
with `set_defaults(func=...)` returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "webhook.cli_serve",  # serve, certs
    "webhook.cli_inject",  # inject (offline, GitOps)
    "webhook.cli_daemonset",  # daemonset render/apply/delete/reconcile, coverage
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logaas-webhook",
        description="Ship Kubernetes logs to Cloud.ru LogaaS: sidecar webhook and DaemonSet.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    from webhook.settings import settings_problem

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as err:  # settings of a command that does not report them itself
        print(f"logaas-webhook: {settings_problem(err)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
