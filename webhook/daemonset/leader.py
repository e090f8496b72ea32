"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm, simplified):
a candidate takes the Lease when it is absent or expired, the leader renews it every
`retry_period`, and a leader that cannot renew within `renew_deadline` steps down.
Optimistic concurrency (resourceVersion on update, 409 on create) settles races."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from webhook.daemonset.kubeapply import LEASES, Kube

log = logging.getLogger("logaas.daemonset")
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _now() -> str:
    return datetime.now(UTC).strftime(_FORMAT)


def _parse(value: str | None) -> float:
    if not value:
        return 0.0
    for fmt in (_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return 0.0


def default_identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str | None = None,
        lease_seconds: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = threading.Event()

    def try_acquire_or_renew(self) -> bool:
        lease = self.kube.get(LEASES, self.namespace, self.name)
        now = _now()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.lease_seconds,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                self.kube.create(body)
                return True
            except ApiException as err:
                if err.status == 409:
                    return False
                raise
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = _parse(spec.get("renewTime")) + duration < time.time()
        if holder not in (self.identity, None, "") and not expired:
            return False
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.lease_seconds,
            renewTime=now,
        )
        if holder != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            self.kube.update(lease)
            return True
        except ApiException as err:
            if err.status in (409, 404):
                return False
            raise

    def run(self, stop: threading.Event) -> None:
        """Campaign and renew until `stop`; `is_leader` tells the current state."""
        last_renew = 0.0
        while not stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except Exception as err:
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
                ok = False
            now = time.monotonic()
            if ok:
                if not self.is_leader.is_set():
                    log.info("became leader (lease %s/%s)", self.namespace, self.name)
                last_renew = now
                self.is_leader.set()
            elif self.is_leader.is_set() and now - last_renew > self.renew_deadline:
                log.warning("lost leadership (lease %s/%s)", self.namespace, self.name)
                self.is_leader.clear()
            stop.wait(self.retry_period)
        if self.is_leader.is_set():
            self.release()

    def release(self) -> None:
        """Give the lease up at shutdown so another replica takes over at once."""
        self.is_leader.clear()
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.update(lease)
        except Exception as err:
            log.warning("could not release lease: %s", err)
