"""AdmissionReviews shaped like the ones kube-apiserver sends for a Deployment's pods.

A ReplicaSet controller creates the pod: it has generateName and no name, ownerReferences to
the ReplicaSet, the pod-template-hash label, managedFields from kube-controller-manager, the
defaults the apiserver filled in (terminationMessagePath, dnsPolicy, tolerations, the
kube-api-access projected volume) and the user's containers with env, probes and resources.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import orjson

JSON = dict[str, Any]


def _container(name: str, image: str, port: int, env_count: int, env_len: int = 24) -> JSON:
    env: list[JSON] = [
        {"name": f"{name.upper().replace('-', '_')}_SETTING_{i}", "value": f"v{i}-" + "x" * env_len}
        for i in range(env_count)
    ]
    env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    env.append(
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-db", "key": "password"}},
        }
    )
    probe = {
        "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    return {
        "name": name,
        "image": image,
        "command": ["/app/server"],
        "args": ["--listen", f":{port}", "--log-format", "json"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
        "resources": {
            "limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app"},
            {
                "name": "kube-api-access-x7k2p",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
        ],
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/readyz"}},
        "startupProbe": {**probe, "failureThreshold": 30},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def _managed_fields(containers: list[str]) -> list[JSON]:
    spec_fields: JSON = {
        f'k:{{"name":"{c}"}}': {
            ".": {},
            "f:args": {},
            "f:command": {},
            "f:env": {".": {}, 'k:{"name":"POD_IP"}': {".": {}, "f:name": {}, "f:valueFrom": {}}},
            "f:image": {},
            "f:imagePullPolicy": {},
            "f:livenessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}}},
            "f:name": {},
            "f:ports": {".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}}},
            "f:readinessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}}},
            "f:resources": {".": {}, "f:limits": {}, "f:requests": {}},
            "f:securityContext": {".": {}, "f:allowPrivilegeEscalation": {}},
            "f:terminationMessagePath": {},
            "f:terminationMessagePolicy": {},
            "f:volumeMounts": {".": {}, 'k:{"mountPath":"/etc/app"}': {".": {}}},
        }
        for c in containers
    }
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-12-04T10:21:07Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:annotations": {".": {}, "f:logaas/inject": {}, "f:prometheus.io/scrape": {}},
                    "f:generateName": {},
                    "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                    "f:ownerReferences": {".": {}, 'k:{"uid":"5b1c"}': {}},
                },
                "f:spec": {
                    "f:containers": spec_fields,
                    "f:dnsPolicy": {},
                    "f:enableServiceLinks": {},
                    "f:restartPolicy": {},
                    "f:schedulerName": {},
                    "f:securityContext": {},
                    "f:terminationGracePeriodSeconds": {},
                    "f:volumes": {".": {}, 'k:{"name":"config"}': {".": {}, "f:configMap": {}}},
                },
            },
        }
    ]


def pod(
    containers: int = 3,
    env_per_container: int = 12,
    env_len: int = 24,
    extra_annotation_bytes: int = 0,
    managed_fields: bool = True,
) -> JSON:
    names = ["api", "worker", "metrics-exporter", "cache", "auth-proxy"]
    cnames = [names[i] if i < len(names) else f"app-{i}" for i in range(containers)]
    annotations = {
        "logaas/inject": "true",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "kubectl.kubernetes.io/restartedAt": "2026-12-04T10:20:55Z",
    }
    if extra_annotation_bytes:
        # e.g. a large last-applied-configuration or a tool's bookkeeping annotation
        annotations["example.com/bookkeeping"] = "b" * extra_annotation_bytes
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "payments-api-7c9d8f6b5d-",
            "namespace": "payments",
            "uid": "7c1e5a8e-4c0f-4b8e-9d7e-0c2d1f3a4b5c",
            "creationTimestamp": None,
            "labels": {
                "app": "payments-api",
                "app.kubernetes.io/name": "payments-api",
                "app.kubernetes.io/part-of": "payments",
                "pod-template-hash": "7c9d8f6b5d",
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "payments-api-7c9d8f6b5d",
                    "uid": "5b1c7f0e-2a3d-4e5f-8a9b-0c1d2e3f4a5b",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": _managed_fields(cnames) if managed_fields else [],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "payments-api", "defaultMode": 420}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "expirationSeconds": 3607,
                                    "path": "token",
                                }
                            },
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [
                _container(
                    n,
                    f"registry.example.com/payments/{n}:1.42.{i}",
                    8080 + i,
                    env_per_container,
                    env_len,
                )
                for i, n in enumerate(cnames)
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "payments-api",
            "serviceAccount": "payments-api",
            "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def review(obj: JSON, uid: str | None = None) -> JSON:
    """The AdmissionReview kube-apiserver posts for a pod CREATE."""
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "payments",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def encoded(obj: JSON) -> bytes:
    return orjson.dumps(review(obj, uid="0b7e3c1a-9f2d-4e6b-8a1c-3d5f7e9a1b2c"))


def deployment_review() -> bytes:
    """The load-test review: a three-container Deployment pod, 8-15 KB on the wire."""
    return encoded(pod())


def distinct_reviews(count: int) -> list[bytes]:
    """`count` reviews of the Deployment pod, each of another pod template (as many
    Deployments would send): same size, different bytes, so no answer can be reused."""
    body = deployment_review()
    return [body.replace(b"7c9d8f6b5d", f"{i:010x}".encode()) for i in range(count)]


def sized_review(target: int) -> bytes:
    """A review of about `target` bytes, grown the way real pods grow: containers and env."""
    if target <= 4096:
        # The smallest realistic pod: one container, no env, one probe, one toleration.
        obj = pod(containers=1, env_per_container=0, managed_fields=False)
        spec = obj["spec"]
        for key in ("startupProbe", "readinessProbe", "envFrom", "securityContext", "env"):
            spec["containers"][0].pop(key)
        spec["volumes"] = spec["volumes"][:1]
        spec["tolerations"] = spec["tolerations"][:1]
        del (
            obj["metadata"]["ownerReferences"],
            obj["metadata"]["labels"]["app.kubernetes.io/part-of"],
        )
        return encoded(obj)
    containers = 5
    low, high = 1, 20000
    # Binary search env vars per container for the target size.
    while low < high:
        mid = (low + high) // 2
        if len(encoded(pod(containers=containers, env_per_container=mid))) < target:
            low = mid + 1
        else:
            high = mid
    return encoded(pod(containers=containers, env_per_container=low))


def env_heavy_review(env_vars: int = 1000) -> bytes:
    """One container with `env_vars` env vars (a config-by-env application)."""
    obj = pod(containers=1, env_per_container=env_vars)
    return encoded(copy.deepcopy(obj))


if __name__ == "__main__":
    for label, body in [
        ("deployment", deployment_review()),
        ("2k", sized_review(2048)),
        ("64k", sized_review(64 * 1024)),
        ("1m", sized_review(1024 * 1024)),
        ("env1000", env_heavy_review()),
    ]:
        print(label, len(body))
