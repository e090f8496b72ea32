"""`logaas-webhook daemonset render|apply|delete|reconcile` and `logaas-webhook coverage`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from webhook.daemonset import agentconf
from webhook.daemonset.coverage import PROBLEMS, format_report, pods_from_documents, report
from webhook.daemonset.render import (
    DEFAULT_NAMESPACE,
    DEFAULT_PREFIX,
    namespaces_from_documents,
    render_objects,
    to_yaml,
)
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings, load_settings

log = logging.getLogger("logaas.daemonset")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _read_yaml(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return list(yaml.safe_load_all(text))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"install namespace of the agent (default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--config", metavar="FILE", help="settings YAML (as for serve)")


def _kube(args: argparse.Namespace) -> Any:
    from webhook.daemonset.kubeapply import Kube
    from webhook.kubeclient import api_client

    kubeconfig = getattr(args, "kubeconfig", None)
    return Kube(api_client(Path(kubeconfig) if kubeconfig else None))


def cmd_render(args: argparse.Namespace) -> int:
    settings = _settings(args)
    namespaces: list[NamespaceInfo] = []
    if args.namespaces:
        namespaces = namespaces_from_documents(_read_yaml(args.namespaces))
    objects, plan = render_objects(settings, namespaces, args.namespace, DEFAULT_PREFIX)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(to_yaml(objects))
    return 0


def _live_namespaces(kube: Any) -> list[NamespaceInfo]:
    from webhook.daemonset.kubeapply import NAMESPACES

    items, _ = kube.list(NAMESPACES)
    return [NamespaceInfo.from_object(i) for i in items]


def cmd_apply(args: argparse.Namespace) -> int:
    from webhook.daemonset.kubeapply import apply_all

    settings = _settings(args)
    kube = _kube(args)
    objects, plan = render_objects(settings, _live_namespaces(kube), args.namespace)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for obj in apply_all(kube, objects):
        print(f"{obj['kind'].lower()}/{obj['metadata']['name']} applied")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from webhook.daemonset.kubeapply import delete_all

    settings = _settings(args)
    kube = _kube(args)
    objects, _ = render_objects(settings, (), args.namespace)
    deleted = delete_all(kube, objects)
    for name in deleted:
        print(f"{name} deleted")
    if not deleted:
        print("nothing to delete")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from webhook.daemonset.leader import LeaderElector
    from webhook.daemonset.reconcile import Reconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = _settings(args)
    kube = _kube(args)
    reconciler = Reconciler(
        kube, settings, args.namespace, sync_credentials=not args.no_sync_credentials
    )
    if not args.watch:
        reconciler.load_namespaces()
        result = reconciler.reconcile_once(full=True)
        print(f"applied {len(result.applied)} objects")
        if result.credentials is not None:
            c = result.credentials
            print(
                f"credential copies: {len(c.created)} created, {len(c.updated)} updated, "
                f"{len(c.deleted)} deleted, {len(c.skipped)} foreign"
            )
        return 0

    stop = threading.Event()

    def shutdown(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    is_leader = lambda: True  # noqa: E731
    threads: list[threading.Thread] = []
    if args.leader_elect:
        elector = LeaderElector(kube, args.namespace, f"{DEFAULT_PREFIX}-agent-reconciler")
        threads.append(threading.Thread(target=elector.run, args=(stop,), daemon=True))
        is_leader = elector.is_leader.is_set
    for thread in threads:
        thread.start()
    reconciler.run(stop, watch_changes=True, is_leader=is_leader)
    for thread in threads:
        thread.join(timeout=5)
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if bool(args.namespaces) != bool(args.pods):
        print("coverage: give both --namespaces and --pods, or neither", file=sys.stderr)
        return 2
    configs: dict[str, str] | None = None
    if args.namespaces:
        namespaces = namespaces_from_documents(_read_yaml(args.namespaces))
        pods = pods_from_documents(_read_yaml(args.pods))
    else:
        from webhook.daemonset.kubeapply import CONFIGMAPS, PODS

        kube = _kube(args)
        namespaces = _live_namespaces(kube)
        items, _ = kube.list(PODS)
        pods = pods_from_documents(items)
        live = kube.get(CONFIGMAPS, args.namespace, f"{DEFAULT_PREFIX}-agent")
        if live is not None and agentconf.PRIMARY_CONFIG in (live.get("data") or {}):
            configs = dict(live["data"])  # what the agent really runs
    objects, plan = render_objects(settings, namespaces, args.namespace)
    if configs is None:
        configs = objects[3]["data"]
    rows = report(pods, namespaces, settings, configs, args.namespace, plan.agent_name)
    sys.stdout.write(format_report(rows))
    return 1 if any(r.verdict in PROBLEMS for r in rows) else 0


def register(subparsers: Any) -> None:
    ds = subparsers.add_parser(
        "daemonset", help="render, apply, delete or reconcile the DaemonSet node agent"
    )
    sub = ds.add_subparsers(dest="daemonset_command", required=True, metavar="SUBCOMMAND")

    render = sub.add_parser("render", help="print the agent's objects as multi-document YAML")
    render.add_argument(
        "--namespaces",
        metavar="FILE",
        help="`kubectl get namespaces -o yaml` output ('-' for stdin); without it no "
        "per-namespace rules",
    )
    _common(render)
    render.set_defaults(func=cmd_render)

    for name, func, text in (
        ("apply", cmd_apply, "server-side apply the agent for the cluster's namespaces"),
        ("delete", cmd_delete, "delete the agent's objects"),
    ):
        p = sub.add_parser(name, help=text)
        _common(p)
        p.add_argument("--kubeconfig", metavar="PATH", help="default: in-cluster, $KUBECONFIG")
        p.set_defaults(func=func)

    rec = sub.add_parser(
        "reconcile", help="apply once, or with --watch keep the agent and credential copies in line"
    )
    _common(rec)
    rec.add_argument("--kubeconfig", metavar="PATH", help="default: in-cluster, $KUBECONFIG")
    rec.add_argument("--watch", action="store_true", help="watch namespaces and keep reconciling")
    rec.add_argument(
        "--no-sync-credentials",
        action="store_true",
        help="do not copy the credentials Secret into namespaces that need it",
    )
    rec.add_argument(
        "--leader-elect",
        action="store_true",
        help="only the holder of a Lease in the install namespace reconciles (replicas > 1)",
    )
    rec.set_defaults(func=cmd_reconcile)

    cov = subparsers.add_parser(
        "coverage",
        help="report who ships each pod's logs (sidecar, daemonset, opted-out, none, both)",
    )
    cov.add_argument("--namespaces", metavar="FILE", help="`kubectl get namespaces -o yaml` output")
    cov.add_argument("--pods", metavar="FILE", help="`kubectl get pods -A -o yaml` output")
    _common(cov)
    cov.add_argument("--kubeconfig", metavar="PATH", help="without files: read the live cluster")
    cov.set_defaults(func=cmd_coverage)
