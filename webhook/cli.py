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
# Which module registers each command: a known command loads only its own module, so the
# long-running server never carries the YAML round-tripper or the DaemonSet renderer.
COMMANDS = {
    "serve": "webhook.cli_serve",
    "certs": "webhook.cli_serve",
    "inject": "webhook.cli_inject",
    "daemonset": "webhook.cli_daemonset",
    "coverage": "webhook.cli_daemonset",
}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logaas-webhook",
        description="Ship Kubernetes logs to Cloud.ru LogaaS: sidecar webhook and DaemonSet.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    from webhook.settings import settings_problem

    argv = list(sys.argv[1:] if argv is None else argv)
    own = COMMANDS.get(argv[0]) if argv else None
    args = build_parser((own,) if own else COMMAND_MODULES).parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as err:  # settings of a command that does not report them itself
        print(f"logaas-webhook: {settings_problem(err)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
