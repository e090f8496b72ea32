"""DaemonSet mode against an HTTP-level fake API server with the real kubernetes client:
apply/delete (CLI), reconcile reacting to namespace changes, apply only on change,
credential copies, backoff on API errors, leader election."""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakekube import FakeKube
from webhook import cli, names
from webhook.daemonset.credentials import CredentialSync
from webhook.daemonset.kubeapply import FIELD_MANAGER, Kube
from webhook.daemonset.leader import LeaderElector
from webhook.daemonset.reconcile import Backoff, Reconciler
from webhook.daemonset.render import CHECKSUM, MANAGED_BY, config_checksum
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

NS = "logaas"
OBJECTS = [
    ("v1", "serviceaccounts", NS),
    ("rbac.authorization.k8s.io/v1", "clusterroles", None),
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings", None),
    ("v1", "configmaps", NS),
    ("apps/v1", "daemonsets", NS),
]


def namespace(
    name: str, labels: dict[str, str] | None = None, **annotations: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations},
    }


def secret(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "data": {
            k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in data.items()
        },
    }


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as kube:
        kube.put(namespace(NS))
        kube.put(namespace("default"))
        yield kube


@pytest.fixture
def kubeconfig(fake: FakeKube, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def agent_objects(fake: FakeKube) -> list[dict[str, Any] | None]:
    return [fake.get(v, r, ns, "logaas-agent") for v, r, ns in OBJECTS]


def checksum(fake: FakeKube) -> str:
    ds = fake.get("apps/v1", "daemonsets", NS, "logaas-agent")
    assert ds is not None
    value: str = ds["spec"]["template"]["metadata"]["annotations"][CHECKSUM]
    return value


def settled(fake: FakeKube) -> bool:
    """The DaemonSet carries the checksum of the ConfigMap's current data."""
    cm = fake.get("v1", "configmaps", NS, "logaas-agent")
    return cm is not None and checksum(fake) == config_checksum(cm["data"])


def config(fake: FakeKube) -> str:
    cm = fake.get("v1", "configmaps", NS, "logaas-agent")
    assert cm is not None
    text: str = cm["data"]["fluent-bit.conf"]
    return text


# -- apply / delete through the CLI ------------------------------------------------------


def test_cli_apply_then_delete(fake: FakeKube, kubeconfig: Path, capsys: Any) -> None:
    fake.put(namespace("shop", {names.INJECT: names.NS_ENABLED}))
    assert cli.main(["daemonset", "apply", "--kubeconfig", str(kubeconfig)]) == 0
    objects = agent_objects(fake)
    assert all(objects), objects
    applies = fake.requests_for("PATCH")
    assert len(applies) == 5
    for request in applies:
        assert request.content_type == "application/apply-patch+yaml"
        assert request.field_manager == FIELD_MANAGER
    assert "/var/log/containers/*_shop_*.log" in config(fake)
    ds = fake.get("apps/v1", "daemonsets", NS, "logaas-agent")
    assert ds is not None
    assert [m["manager"] for m in ds["metadata"]["managedFields"]] == [FIELD_MANAGER]

    # unchanged cluster: applying again changes nothing
    versions = [o["metadata"]["resourceVersion"] for o in agent_objects(fake) if o]
    assert cli.main(["daemonset", "apply", "--kubeconfig", str(kubeconfig)]) == 0
    assert [o["metadata"]["resourceVersion"] for o in agent_objects(fake) if o] == versions

    assert cli.main(["daemonset", "delete", "--kubeconfig", str(kubeconfig)]) == 0
    assert agent_objects(fake) == [None] * 5
    out = capsys.readouterr().out
    assert "DaemonSet/logaas-agent deleted" in out
    assert cli.main(["daemonset", "delete", "--kubeconfig", str(kubeconfig)]) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_cli_reconcile_once_and_coverage_live(
    fake: FakeKube, kubeconfig: Path, capsys: Any
) -> None:
    fake.put(namespace("shop", {names.INJECT: names.NS_ENABLED}))
    fake.put(secret("logaas-credentials", NS, client_id="id", client_secret="s3cr3t"))
    assert cli.main(["daemonset", "reconcile", "--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert "applied 5 objects" in out and "1 created" in out
    assert fake.get("v1", "secrets", "shop", "logaas-credentials") is not None
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
    )
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "legacy", "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
    )
    assert cli.main(["coverage", "--kubeconfig", str(kubeconfig)]) == 1
    out = capsys.readouterr().out
    assert "default/web  daemonset" in out
    assert "shop/legacy  none" in out


# -- reconcile ---------------------------------------------------------------------------


@pytest.fixture
def running(fake: FakeKube, settings: Settings) -> Iterator[Reconciler]:
    reconciler = Reconciler(
        Kube(fake.api_client()),
        settings,
        NS,
        backoff=Backoff(0.02, 0.2),
        watch_timeout=1,
        settle_seconds=0.05,
    )
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    thread.start()
    assert fake.wait_for(lambda: all(agent_objects(fake)) and settled(fake))
    yield reconciler
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_reconcile_reacts_to_namespace_label_within_seconds(
    fake: FakeKube, running: Reconciler
) -> None:
    before = checksum(fake)
    fake.put(namespace("shop", {names.INJECT: names.NS_ENABLED}))
    assert fake.wait_for(lambda: "*_shop_*" in config(fake) and settled(fake), timeout=5)
    assert checksum(fake) != before
    fake.put(namespace("ops", **{"logaas/group-id": "ops-logs"}))
    assert fake.wait_for(lambda: "ops-logs" in config(fake) and settled(fake), timeout=5)
    fake.put(namespace("shop"))  # label removed: the agent takes the namespace back
    assert fake.wait_for(lambda: "*_shop_*" not in config(fake) and settled(fake), timeout=5)


def test_reconcile_updates_only_on_change(fake: FakeKube, running: Reconciler) -> None:
    fake.put(namespace("ops", **{"logaas/group-id": "ops-logs"}))
    assert fake.wait_for(lambda: "ops-logs" in config(fake) and settled(fake), timeout=5)
    ds_version = fake.get("apps/v1", "daemonsets", NS, "logaas-agent")["metadata"][
        "resourceVersion"
    ]  # type: ignore[index]
    passes = running.passes
    fake.clear_requests()
    # changes that do not matter to the agent: no apply at all
    fake.put(namespace("ops", {"team": "x"}, **{"logaas/group-id": "ops-logs", "other": "y"}))
    fake.put(namespace("scratch", {"env": "dev"}))
    assert fake.wait_for(lambda: running.passes > passes, timeout=5)
    assert fake.requests_for("PATCH") == []
    # a change that does: only the ConfigMap and the DaemonSet (new checksum) are applied
    before = checksum(fake)
    fake.put(namespace("scratch", {names.INJECT: names.NS_ENABLED}))
    assert fake.wait_for(lambda: checksum(fake) != before and settled(fake), timeout=5)
    paths = sorted(r.path for r in fake.requests_for("PATCH"))
    assert paths == [
        f"/api/v1/namespaces/{NS}/configmaps/logaas-agent",
        f"/apis/apps/v1/namespaces/{NS}/daemonsets/logaas-agent",
    ]
    ds = fake.get("apps/v1", "daemonsets", NS, "logaas-agent")
    assert ds is not None and ds["metadata"]["resourceVersion"] != ds_version


def test_reconcile_backs_off_on_api_errors(fake: FakeKube, settings: Settings) -> None:
    fake.fail_next(4, 500, method="PATCH")
    reconciler = Reconciler(
        Kube(fake.api_client()), settings, NS, sync_credentials=False, backoff=Backoff(0.05, 0.4)
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=reconciler.run, args=(stop,), kwargs={"watch_changes": False}, daemon=True
    )
    thread.start()
    try:
        assert fake.wait_for(lambda: all(agent_objects(fake)), timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)
    patches = fake.requests_for("PATCH")
    assert len(patches) == 4 + 5  # four failed attempts, then the five objects
    assert reconciler.backoff.failures == 0  # reset after success


def test_backoff_grows_and_caps() -> None:
    backoff = Backoff(0.5, 8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(b >= a * 1.2 for a, b in itertools.pairwise(delays[:5]))
    assert max(delays) <= 8.0 * 1.2
    backoff.reset()
    assert backoff.next_delay() <= 0.6


def test_watch_survives_compaction(fake: FakeKube, running: Reconciler) -> None:
    fake.compact()  # the next watch from an old resourceVersion gets 410 Gone
    fake.put(namespace("late", {names.INJECT: names.NS_ENABLED}))
    assert fake.wait_for(lambda: "*_late_*" in config(fake) and settled(fake), timeout=8)


# -- credentials -------------------------------------------------------------------------


def test_credential_copies_follow_labels_and_source(fake: FakeKube, running: Reconciler) -> None:
    fake.put(secret("logaas-credentials", NS, client_id="id-1", client_secret="s-1"))
    fake.put(namespace("shop", {names.INJECT: names.NS_ENABLED}))
    fake.put(namespace("solo", **{names.CREDENTIALS: names.CREDENTIALS_SYNC}))
    fake.put(namespace("plain"))

    def copy(ns: str) -> dict[str, Any] | None:
        return fake.get("v1", "secrets", ns, "logaas-credentials")

    assert fake.wait_for(lambda: copy("shop") is not None and copy("solo") is not None)
    source = fake.get("v1", "secrets", NS, "logaas-credentials")
    assert source is not None
    shop = copy("shop")
    assert shop is not None
    assert shop["data"] == source["data"]
    assert shop["metadata"]["labels"][MANAGED_BY] == "logaas-webhook"
    assert copy("plain") is None

    # source rotated: copies follow
    fake.put(secret("logaas-credentials", NS, client_id="id-2", client_secret="s-2"))
    new_data = fake.get("v1", "secrets", NS, "logaas-credentials")["data"]  # type: ignore[index]
    assert fake.wait_for(lambda: (copy("shop") or {}).get("data") == new_data)
    assert fake.wait_for(lambda: (copy("solo") or {}).get("data") == new_data)

    # label gone: copy gone; the other stays
    fake.put(namespace("shop"))
    assert fake.wait_for(lambda: copy("shop") is None)
    assert copy("solo") is not None

    # never cluster-wide secret reads: only by name, in one namespace at a time
    for request in fake.requests_for(path_contains="secrets"):
        assert request.path.startswith("/api/v1/namespaces/"), request.path
        if request.method != "POST" and not request.query.get("watch"):
            assert request.path.endswith("/secrets/logaas-credentials"), request
    # the only watch on secrets is on the source, by name
    watches = [r for r in fake.requests_for("GET", "secrets") if r.query.get("watch")]
    assert all(
        r.path == f"/api/v1/namespaces/{NS}/secrets"
        and r.query.get("fieldSelector") == "metadata.name=logaas-credentials"
        for r in watches
    )


def test_foreign_secret_is_never_touched(fake: FakeKube, settings: Settings) -> None:
    fake.put(secret("logaas-credentials", NS, client_id="id", client_secret="s"))
    fake.put(namespace("team", {names.INJECT: names.NS_ENABLED}))
    mine = secret("logaas-credentials", "team", client_id="their-own", client_secret="x")
    fake.put(mine)
    sync = CredentialSync(Kube(fake.api_client()), settings, NS)
    namespaces = [NamespaceInfo.from_object(o) for o in fake.list("v1", "namespaces")]
    result = sync.sync(namespaces)
    assert result.skipped == ["team"] and not result.changed
    # label removed, and a new reconciler sweeps every namespace: still not ours, kept
    fake.put(namespace("team"))
    namespaces = [NamespaceInfo.from_object(o) for o in fake.list("v1", "namespaces")]
    fresh = CredentialSync(Kube(fake.api_client()), settings, NS)
    assert fresh.sync(namespaces).deleted == []
    assert fake.requests_for("GET", "/namespaces/team/secrets/logaas-credentials")
    kept = fake.get("v1", "secrets", "team", "logaas-credentials")
    assert kept is not None and kept["data"] == mine["data"]


def test_stale_copy_swept_after_restart(fake: FakeKube, settings: Settings) -> None:
    """A label removed while no reconciler ran: the first pass of a new one finds the copy."""
    fake.put(secret("logaas-credentials", NS, client_id="id", client_secret="s"))
    fake.put(namespace("gone", {names.INJECT: names.NS_ENABLED}))
    kube = Kube(fake.api_client())

    def namespaces() -> list[NamespaceInfo]:
        return [NamespaceInfo.from_object(o) for o in fake.list("v1", "namespaces")]

    assert CredentialSync(kube, settings, NS).sync(namespaces()).created == ["gone"]
    fake.put(namespace("gone"))
    assert CredentialSync(kube, settings, NS).sync(namespaces()).deleted == ["gone"]


def test_no_sync_credentials(fake: FakeKube, settings: Settings) -> None:
    fake.put(secret("logaas-credentials", NS, client_id="id", client_secret="s"))
    fake.put(namespace("shop", {names.INJECT: names.NS_ENABLED}))
    reconciler = Reconciler(Kube(fake.api_client()), settings, NS, sync_credentials=False)
    reconciler.load_namespaces()
    result = reconciler.reconcile_once(full=True)
    assert result.credentials is None
    assert fake.get("v1", "secrets", "shop", "logaas-credentials") is None


# -- leader election ---------------------------------------------------------------------


def test_leader_election_one_leader_and_handover(fake: FakeKube) -> None:
    kube = Kube(fake.api_client())
    a = LeaderElector(kube, NS, "logaas-agent-reconciler", "a", 15, 10, 0.05)
    b = LeaderElector(kube, NS, "logaas-agent-reconciler", "b", 15, 10, 0.05)
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a,), daemon=True)
    ta.start()
    assert a.is_leader.wait(5)
    tb = threading.Thread(target=b.run, args=(stop_b,), daemon=True)
    tb.start()
    threading.Event().wait(0.4)
    assert not b.is_leader.is_set()
    lease = fake.get("coordination.k8s.io/v1", "leases", NS, "logaas-agent-reconciler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"
    stop_a.set()  # a releases the lease on the way out
    ta.join(timeout=5)
    assert b.is_leader.wait(5)
    lease = fake.get("coordination.k8s.io/v1", "leases", NS, "logaas-agent-reconciler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    stop_b.set()
    tb.join(timeout=5)


def test_expired_lease_is_taken_over(fake: FakeKube) -> None:
    fake.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "l", "namespace": NS},
            "spec": {
                "holderIdentity": "dead",
                "leaseDurationSeconds": 15,
                "renewTime": "2020-01-01T00:00:00.000000Z",
            },
        }
    )
    elector = LeaderElector(Kube(fake.api_client()), NS, "l", "alive")
    assert elector.try_acquire_or_renew()
    fake.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "m", "namespace": NS},
            "spec": {
                "holderIdentity": "other",
                "leaseDurationSeconds": 3600,
                "renewTime": "2999-01-01T00:00:00.000000Z",
            },
        }
    )
    assert not LeaderElector(Kube(fake.api_client()), NS, "m", "alive").try_acquire_or_renew()


def test_only_the_leader_reconciles(fake: FakeKube, settings: Settings) -> None:
    reconciler = Reconciler(Kube(fake.api_client()), settings, NS, watch_timeout=1)
    stop = threading.Event()
    leader = threading.Event()
    thread = threading.Thread(
        target=reconciler.run, args=(stop,), kwargs={"is_leader": leader.is_set}, daemon=True
    )
    thread.start()
    try:
        threading.Event().wait(0.5)
        assert fake.requests_for("PATCH") == []
        leader.set()
        assert fake.wait_for(lambda: all(agent_objects(fake)), timeout=5)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_burst_of_namespaces_rolls_the_agent_once(fake: FakeKube, settings: Settings) -> None:
    reconciler = Reconciler(
        Kube(fake.api_client()), settings, NS, sync_credentials=False, watch_timeout=1,
        settle_seconds=0.5,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert fake.wait_for(lambda: all(agent_objects(fake)) and settled(fake))
        fake.clear_requests()
        for i in range(10):
            fake.put(namespace(f"team-{i}", **{"logaas/group-id": f"g-{i}"}))
        assert fake.wait_for(lambda: "g-9" in config(fake) and settled(fake), timeout=5)
        rolls = fake.requests_for("PATCH", "/daemonsets/")
        assert len(rolls) == 1, [r.path for r in rolls]
    finally:
        stop.set()
        thread.join(timeout=10)


def test_credential_sync_calls_scale_with_changes(fake: FakeKube, settings: Settings) -> None:
    """After the first sweep, a pass reads only the source and what changed."""
    fake.put(secret("logaas-credentials", NS, client_id="id", client_secret="s"))
    for i in range(20):
        labels = {names.INJECT: names.NS_ENABLED} if i % 2 else {}
        fake.put(namespace(f"ns-{i}", labels))
    sync = CredentialSync(Kube(fake.api_client()), settings, NS)

    def namespaces() -> list[NamespaceInfo]:
        return [NamespaceInfo.from_object(o) for o in fake.list("v1", "namespaces")]

    assert len(sync.sync(namespaces()).created) == 10
    fake.clear_requests()
    assert not sync.sync(namespaces()).changed
    assert len(fake.requests) == 1  # the source Secret
    fake.put(namespace("ns-0", {names.INJECT: names.NS_ENABLED}))
    fake.put(namespace("ns-1"))
    fake.clear_requests()
    result = sync.sync(namespaces())
    assert (result.created, result.deleted) == (["ns-0"], ["ns-1"])
    assert len(fake.requests) == 1 + 2 + 2  # source; get+create; get+delete
    fake.clear_requests()
    assert not sync.sync(namespaces(), full=True).changed  # periodic: every wanted copy read
    assert len(fake.requests) == 1 + 10
