"""The Helm chart, rendered by the real helm binary and checked against Kubernetes' own schemas.

Every rendered document is validated strictly (1.29 and the newest release); cert-manager and
prometheus-operator kinds, which have no schema there, are checked structurally. The webhook
entries are checked by evaluating their namespace selectors the way kube-apiserver does.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube import tool, validate_strict
from webhook import certs, names
from webhook.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "logaas-webhook"
RELEASE = "logaas-webhook"
NAMESPACE = "logaas"
FULLNAME = "logaas-webhook"
REQUIRED = (
    "logaas.projectId=proj-1",
    "logaas.groupId=group-1",
    "credentials.existingSecret=logaas-credentials",
)
CRD_KINDS = {"Certificate", "Issuer", "ServiceMonitor"}


def helm() -> str:
    return tool("helm")


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate keys (a silent override in most parsers)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _args(sets: tuple[str, ...], json_sets: tuple[str, ...]) -> list[str]:
    args: list[str] = []
    for item in sets:
        args += ["--set", item]
    for item in json_sets:
        args += ["--set-json", item]
    return args


def run_template(
    *sets: str,
    json_sets: tuple[str, ...] = (),
    release: str = RELEASE,
    required: bool = True,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    base = REQUIRED if required else ()
    return subprocess.run(
        [helm(), "template", release, str(CHART), "-n", NAMESPACE,
         *_args((*base, *sets), json_sets), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@functools.cache
def _render(sets: tuple[str, ...], json_sets: tuple[str, ...], release: str) -> str:
    proc = run_template(*sets, json_sets=json_sets, release=release)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(
    *sets: str, json_sets: tuple[str, ...] = (), release: str = RELEASE
) -> list[dict[str, Any]]:
    text = _render(tuple(sets), json_sets, release)
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


PROVIDED_CA = certs.generate_ca()[0]
PROVIDED = (
    "tls.mode=provided",
    "tls.provided.secretName=my-webhook-tls",
    f"tls.provided.caBundle={base64.b64encode(PROVIDED_CA).decode()}",
)

# Named value sets: default, each tls.mode, the DaemonSet companion on and off, and the options.
CASES: dict[str, tuple[str, ...]] = {
    "default": (),
    "auto": ("tls.mode=auto",),
    "certManager": ("tls.mode=certManager",),
    "certManager-issuer": (
        "tls.mode=certManager",
        "tls.certManager.issuerRef.name=corp-ca",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ),
    "provided": PROVIDED,
    "daemonset-on": ("daemonset.enabled=true",),
    "daemonset-off": ("daemonset.enabled=false",),
    "daemonset-ha-nosync": (
        "daemonset.enabled=true",
        "daemonset.replicas=2",
        "daemonset.syncCredentials=false",
    ),
    "servicemonitor": ("metrics.serviceMonitor.enabled=true",),
    "created-credentials": (
        "credentials.existingSecret=",
        "credentials.clientId=id-0123",
        "credentials.clientSecret=s3cr3t-value",
    ),
    "options": (
        "replicaCount=3",
        "sidecar.native=false",
        "priorityClassName=system-cluster-critical",
        "logaas.excludedNamespaces={legacy,batch}",
        "image.digest=sha256:" + "a" * 64,
        "podDisruptionBudget.enabled=false",
    ),
}


# --- helm lint and strict schemas -------------------------------------------------------------


@pytest.mark.parametrize("case", ["default", "certManager", "provided", "daemonset-on"])
def test_helm_lint_strict(case: str) -> None:
    proc = subprocess.run(
        [helm(), "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
         *_args((*REQUIRED, *CASES[case]), ())],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_document_is_schema_valid(case: str) -> None:
    docs = render(*CASES[case])
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            check_crd_object(doc)
        else:
            validate_strict(doc)
        meta = doc["metadata"]
        assert len(meta["name"]) <= 63
        if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}:
            assert meta["namespace"] == NAMESPACE, doc["kind"]


def check_crd_object(doc: dict[str, Any]) -> None:
    """Structural checks for kinds kubernetes-validate has no schema for."""
    kind = doc["kind"]
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    spec = doc["spec"]
    if kind in {"Certificate", "Issuer"}:
        assert doc["apiVersion"] == "cert-manager.io/v1"
    if kind == "Issuer":
        assert len(spec) == 1 and (spec == {"selfSigned": {}} or set(spec["ca"]) == {"secretName"})
    elif kind == "Certificate":
        allowed = {
            "secretName", "commonName", "dnsNames", "duration", "renewBefore", "privateKey",
            "usages", "issuerRef", "isCA",
        }  # fmt: skip
        assert set(spec) <= allowed, set(spec) - allowed
        assert set(spec["issuerRef"]) == {"name", "kind", "group"}
        assert spec["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}
        assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"]["size"] == 256
        for field in ("duration", "renewBefore"):
            if field in spec:
                assert re.fullmatch(r"[0-9]+h", spec[field]), spec[field]
    elif kind == "ServiceMonitor":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
        for endpoint in spec["endpoints"]:
            allowed = {"port", "path", "scheme", "interval", "scrapeTimeout", "tlsConfig"}
            assert set(endpoint) <= allowed
            assert endpoint["scheme"] == "https"


def test_long_release_names_stay_within_63_characters() -> None:
    release = "a-very-long-release-name-for-the-logaas-webhook-prod1"
    assert len(release) == 53  # the longest name Helm accepts
    docs = render("daemonset.enabled=true", release=release)
    name = _webhook_deploy(docs)["metadata"]["name"]
    assert len(name) <= 52
    args = _args_of(one(docs, "Deployment", f"{name}-daemonset"))
    assert args[:2] == ["daemonset", "reconcile"]
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63


# --- the MutatingWebhookConfiguration ---------------------------------------------------------


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics, as kube-apiserver evaluates a namespaceSelector."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace(name: str, inject: str | None = None) -> dict[str, str]:
    labels = {names.NAMESPACE_NAME_LABEL: name}
    if inject is not None:
        labels[names.INJECT] = inject
    return labels


def _called(webhooks: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    return [
        w["clientConfig"]["service"]["path"]
        for w in webhooks
        if _selector_matches(w["namespaceSelector"], labels)
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_webhook_entries(case: str) -> None:
    docs = render(*CASES[case])
    config = one(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == FULLNAME
    hooks = config["webhooks"]
    assert [w["clientConfig"]["service"]["path"] for w in hooks] == [
        "/mutate",
        "/mutate/namespace",
    ]
    by_path = {w["clientConfig"]["service"]["path"]: w for w in hooks}
    assert by_path["/mutate"]["failurePolicy"] == "Ignore"
    assert by_path["/mutate/namespace"]["failurePolicy"] == "Fail"
    excluded = ["kube-system", "kube-public", "kube-node-lease", NAMESPACE]
    for hook in hooks:
        assert hook["rules"] == [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["timeoutSeconds"] == 5
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["matchPolicy"] == "Equivalent"
        service = hook["clientConfig"]["service"]
        assert (service["name"], service["namespace"], service["port"]) == (
            FULLNAME,
            NAMESPACE,
            443,
        )
        name_expr = hook["namespaceSelector"]["matchExpressions"][1]
        assert name_expr["key"] == names.NAMESPACE_NAME_LABEL
        assert name_expr["operator"] == "NotIn"
        assert name_expr["values"][:4] == excluded
    assert by_path["/mutate"]["namespaceSelector"]["matchExpressions"][0] == {
        "key": "logaas/inject",
        "operator": "DoesNotExist",
    }
    assert by_path["/mutate/namespace"]["namespaceSelector"]["matchExpressions"][0] == {
        "key": "logaas/inject",
        "operator": "In",
        "values": ["enabled"],
    }


def test_namespace_selectors_route_each_namespace_to_at_most_one_entry() -> None:
    hooks = one(render(*CASES["options"]), "MutatingWebhookConfiguration")["webhooks"]
    assert _called(hooks, _namespace("shop")) == ["/mutate"]
    assert _called(hooks, _namespace("shop", "enabled")) == ["/mutate/namespace"]
    assert _called(hooks, _namespace("shop", "disabled")) == []
    for never in ("kube-system", "kube-public", "kube-node-lease", NAMESPACE, "legacy", "batch"):
        assert _called(hooks, _namespace(never)) == []
        assert _called(hooks, _namespace(never, "enabled")) == []


def test_webhook_values_are_configurable() -> None:
    docs = render(
        "webhook.podFailurePolicy=Fail",
        "webhook.namespaceFailurePolicy=Ignore",
        "webhook.timeoutSeconds=10",
        "webhook.reinvocationPolicy=Never",
        "webhook.matchPolicy=Exact",
        "webhook.sideEffects=NoneOnDryRun",
        "service.port=8443",
        json_sets=('webhook.objectSelector={"matchLabels":{"team":"a"}}',),
    )
    hooks = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert [h["failurePolicy"] for h in hooks] == ["Fail", "Ignore"]
    for hook in hooks:
        assert hook["timeoutSeconds"] == 10
        assert hook["reinvocationPolicy"] == "Never"
        assert hook["matchPolicy"] == "Exact"
        assert hook["sideEffects"] == "NoneOnDryRun"
        assert hook["objectSelector"] == {"matchLabels": {"team": "a"}}
        assert hook["clientConfig"]["service"]["port"] == 8443
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 8443


# --- TLS modes ---------------------------------------------------------------------------------


def _webhook_deploy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "webhook"
    ]
    assert len(found) == 1
    return found[0]


def _container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def _args_of(deploy: dict[str, Any]) -> list[str]:
    args: list[str] = _container(deploy)["args"]
    return args


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def _volume(deploy: dict[str, Any], name: str) -> dict[str, Any]:
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    return volumes[name]


def test_tls_auto_mode() -> None:
    docs = render()
    deploy = _webhook_deploy(docs)
    container = _container(deploy)
    args = _args_of(deploy)
    assert container["command"] == ["logaas-webhook"]
    assert args[0] == "serve"
    assert _flag(args, "--host") == "0.0.0.0"
    assert _flag(args, "--port") == "8443"
    assert _flag(args, "--cert-dir") == "/certs"
    assert _flag(args, "--config") == "/etc/logaas-webhook/config.yaml"
    assert "--namespace-watch" in args
    secret = _flag(args, "--tls-auto-secret")
    assert secret == f"{FULLNAME}-tls"
    assert (
        _flag(args, "--tls-auto-webhook")
        == one(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    )
    assert _flag(args, "--tls-auto-service") == one(docs, "Service")["metadata"]["name"]
    assert _flag(args, "--tls-auto-namespace") == NAMESPACE
    # The webhook writes its files into a writable emptyDir (the root fs is read-only).
    assert "emptyDir" in _volume(deploy, "certs")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "certs")
    assert mount["mountPath"] == "/certs" and mount["readOnly"] is False
    hooks = one(docs, "MutatingWebhookConfiguration")
    assert all("caBundle" not in h["clientConfig"] for h in hooks["webhooks"])
    assert "annotations" not in hooks["metadata"]
    # The test pod verifies the server with the CA from the Secret the webhook keeps.
    test_pod = one(docs, "Pod")
    assert test_pod["spec"]["volumes"][0]["secret"]["secretName"] == secret
    assert not [d for d in docs if d["kind"] in CRD_KINDS]


@pytest.mark.parametrize("case", ["certManager", "certManager-issuer", "provided"])
def test_tls_secret_modes_mount_the_secret(case: str) -> None:
    docs = render(*CASES[case])
    deploy = _webhook_deploy(docs)
    args = _args_of(deploy)
    assert not [a for a in args if a.startswith("--tls-auto")]
    secret = _volume(deploy, "certs")["secret"]["secretName"]
    mount = next(m for m in _container(deploy)["volumeMounts"] if m["name"] == "certs")
    assert mount["mountPath"] == "/certs" and mount["readOnly"] is True
    # No Role on Secrets: the webhook reads its certificate from the mounted volume only.
    assert not [d for d in docs if d["kind"] == "Role"]
    rules = one(docs, "ClusterRole", FULLNAME)["rules"]
    assert rules == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    hooks = one(docs, "MutatingWebhookConfiguration")
    if case == "provided":
        assert secret == "my-webhook-tls"
        bundles = {h["clientConfig"]["caBundle"] for h in hooks["webhooks"]}
        assert bundles == {base64.b64encode(PROVIDED_CA).decode()}
        ca_map = one(docs, "ConfigMap", f"{FULLNAME}-test-ca")
        assert ca_map["data"]["ca.crt"].strip() == PROVIDED_CA.decode().strip()
        assert (
            one(docs, "Pod")["spec"]["volumes"][0]["configMap"]["name"]
            == ca_map["metadata"]["name"]
        )
        return
    certificate = one(docs, "Certificate", f"{FULLNAME}-tls")
    assert certificate["spec"]["secretName"] == secret
    assert certificate["spec"]["dnsNames"] == certs.service_hosts(FULLNAME, NAMESPACE)
    assert hooks["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert all("caBundle" not in h["clientConfig"] for h in hooks["webhooks"])
    if case == "certManager":
        issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
        ca_cert = one(docs, "Certificate", f"{FULLNAME}-ca")
        assert ca_cert["spec"]["isCA"] is True
        assert issuers[ca_cert["spec"]["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}
        ca_issuer = issuers[certificate["spec"]["issuerRef"]["name"]]
        assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    else:
        assert not [d for d in docs if d["kind"] == "Issuer"]
        assert certificate["spec"]["issuerRef"] == {
            "name": "corp-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }


# --- workload ----------------------------------------------------------------------------------


def _pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    specs += [d["spec"] for d in docs if d["kind"] == "Pod"]
    return specs


@pytest.mark.parametrize("case", ["default", "daemonset-ha-nosync", "provided", "options"])
def test_pods_pass_pod_security_restricted(case: str) -> None:
    for spec in _pod_specs(render(*CASES[case])):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True
        assert pod_sc["runAsUser"] > 0
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_webhook_deployment_shape() -> None:
    docs = render()
    deploy = _webhook_deploy(docs)
    spec = deploy["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert _selector_matches(spec["selector"], labels)
    container = _container(deploy)
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    spread = pod["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert all(_selector_matches(c["labelSelector"], labels) for c in spread)
    # Service, PDB select exactly the webhook pods; the test pod is not an endpoint.
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    assert _selector_matches({"matchLabels": service["spec"]["selector"]}, labels)
    test_pod = one(docs, "Pod")
    assert not _selector_matches(
        {"matchLabels": service["spec"]["selector"]}, test_pod["metadata"]["labels"]
    )
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert _selector_matches(pdb["spec"]["selector"], labels)
    assert pod["spec"]["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_config_checksum_follows_the_config() -> None:
    def checksum(*sets: str) -> str:
        annotations = _webhook_deploy(render(*sets))["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    assert checksum() == checksum("replicaCount=3")
    assert checksum() != checksum("logaas.groupId=group-2")
    assert checksum() != checksum("sidecar.native=false")


def _config(docs: list[dict[str, Any]], tmp_path: Path) -> Any:
    text = one(docs, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    # The product's own settings loader (extra="forbid") must accept what the chart renders.
    return load_settings(path)


def test_rendered_config_is_accepted_by_the_settings_loader(tmp_path: Path) -> None:
    settings = _config(render(*CASES["options"]), tmp_path)
    assert settings.project_id == "proj-1"
    assert settings.group_id == "group-1"
    assert settings.own_namespace == NAMESPACE
    assert settings.excluded_namespaces == ["legacy", "batch"]
    assert settings.credentials.secret_name == "logaas-credentials"
    assert settings.sidecar.native is False
    assert settings.sidecar.image == "your-registry.cr.cloud.ru/fluent-bit-logaas:3.2.0"
    assert NAMESPACE in settings.never_injected


def test_all_sidecar_and_logaas_values_reach_the_config(tmp_path: Path) -> None:
    docs = render(
        "logaas.logaasAddress=https://logaas.example/",
        "logaas.iamAddress=https://iam.example/",
        "logaas.logPath=/data/logs",
        "logaas.logFiles=app-*.log",
        "logaas.parsers={nginx}",
        "logaas.injectHostNetwork=true",
        "sidecar.image.repository=reg.example/fb",
        "sidecar.image.tag=9.9",
        "sidecar.image.pullPolicy=Always",
        "sidecar.resources.requests.cpu=30m",
        "sidecar.resources.requests.memory=40Mi",
        "sidecar.resources.limits.cpu=300m",
        "sidecar.resources.limits.memory=200Mi",
        "sidecar.httpPort=2121",
        "sidecar.runAsUser=2000",
        "sidecar.logsSizeLimit=2Gi",
        "sidecar.stateSizeLimit=1Gi",
        "sidecar.memBufLimit=10MB",
        "sidecar.storageLimit=1G",
        "sidecar.flushSeconds=5",
        "credentials.clientIdKey=id",
        "credentials.clientSecretKey=key",
        json_sets=(
            'logaas.defaultLabels={"env":"prod"}',
            'logaas.groupPolicy={"team-a-*":["group-a"]}',
        ),
    )
    settings = _config(docs, tmp_path)
    assert settings.logaas_address == "https://logaas.example/"
    assert settings.iam_address == "https://iam.example/"
    assert settings.log_path == "/data/logs"
    assert settings.log_files == "app-*.log"
    assert settings.parsers == ["nginx"]
    assert settings.inject_host_network is True
    # Helm merges maps with the default; `source: null` would drop it.
    assert settings.default_labels == {"source": "kubernetes", "env": "prod"}
    assert settings.group_policy == {"team-a-*": ["group-a"]}
    assert settings.credentials.client_id_key == "id"
    assert settings.credentials.client_secret_key == "key"
    sidecar = settings.sidecar
    assert sidecar.image == "reg.example/fb:9.9"
    assert sidecar.pull_policy == "Always"
    assert (sidecar.cpu_request, sidecar.memory_request) == ("30m", "40Mi")
    assert (sidecar.cpu_limit, sidecar.memory_limit) == ("300m", "200Mi")
    assert (sidecar.http_port, sidecar.run_as_user, sidecar.flush_seconds) == (2121, 2000, 5)
    assert (sidecar.logs_size_limit, sidecar.state_size_limit) == ("2Gi", "1Gi")
    assert (sidecar.mem_buf_limit, sidecar.storage_limit) == ("10MB", "1G")


def test_credentials_secret_created_from_values_only_when_asked() -> None:
    assert not [d for d in render() if d["kind"] == "Secret"]
    secret = one(render(*CASES["created-credentials"]), "Secret")
    assert secret["metadata"]["name"] == "logaas-credentials"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "client-id": "id-0123",
        "client-secret": "s3cr3t-value",
    }
    # The secret value appears in that Secret only, never in the config or a pod spec.
    for doc in render(*CASES["created-credentials"]):
        if doc["kind"] != "Secret":
            assert "s3cr3t-value" not in json.dumps(doc)
            assert base64.b64encode(b"s3cr3t-value").decode() not in json.dumps(doc)


def test_servicemonitor_scrapes_the_service_over_verified_tls() -> None:
    docs = render(*CASES["servicemonitor"])
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert _selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": f"{FULLNAME}-tls", "key": "ca.crt"}
    assert endpoint["tlsConfig"]["serverName"] == f"{FULLNAME}.{NAMESPACE}.svc"


# --- RBAC --------------------------------------------------------------------------------------


def _all_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in {"Role", "ClusterRole"} for r in d["rules"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rbac_has_no_wildcards_and_bindings_resolve(case: str) -> None:
    docs = render(*CASES[case])
    for rule in _all_rules(docs):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        if "resourceNames" in rule:
            assert "create" not in rule["verbs"]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    for binding in (d for d in docs if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        role_kind = "Role" if binding["kind"] == "RoleBinding" else "ClusterRole"
        one(docs, role_kind, binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["name"] in accounts and subject["namespace"] == NAMESPACE
    for spec in _pod_specs([d for d in docs if d["kind"] == "Deployment"]):
        assert spec["serviceAccountName"] in accounts


def test_rbac_of_the_webhook_in_auto_mode() -> None:
    docs = render()
    assert one(docs, "ClusterRole", FULLNAME)["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "patch"],
        },
    ]
    assert one(docs, "Role", FULLNAME)["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{FULLNAME}-tls"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]


def _companion_rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(docs, kind, f"{FULLNAME}-daemonset")["rules"]
    return rules


def test_daemonset_companion() -> None:
    docs = render(*CASES["daemonset-on"])
    deploy = one(docs, "Deployment", f"{FULLNAME}-daemonset")
    assert deploy["spec"]["replicas"] == 1
    assert _args_of(deploy) == [
        "daemonset",
        "reconcile",
        "--watch",
        "--namespace",
        NAMESPACE,
        "--config",
        "/etc/logaas-webhook/config.yaml",
    ]
    assert _container(deploy)["command"] == ["logaas-webhook"]
    spec = deploy["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-daemonset"
    assert _volume(deploy, "config")["configMap"]["name"] == FULLNAME
    assert _companion_rules(docs, "ClusterRole") == [
        {"apiGroups": [""], "resources": ["namespaces", "pods"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles", "clusterrolebindings"],
            "resourceNames": ["logaas-agent"],
            "verbs": ["get", "patch", "delete"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles", "clusterrolebindings"],
            "verbs": ["create"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["logaas-credentials"],
            "verbs": ["get", "update", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    assert _companion_rules(docs, "Role") == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts", "configmaps"],
            "verbs": ["get", "create", "patch", "delete"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets"],
            "verbs": ["get", "create", "patch", "delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["logaas-credentials"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        },
    ]


def rbac_allows(
    docs: list[dict[str, Any]],
    account: str,
    method: str,
    path: str,
    query: dict[str, str],
    verb: str | None = None,
) -> bool:
    """Kubernetes RBAC evaluation of one request against the rendered Roles and ClusterRoles."""
    parts = [p for p in path.split("/") if p]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) > 1 else "")
    if not name:  # list and watch are limited by name only through a metadata.name selector
        selector = query.get("fieldSelector", "")
        if selector.startswith("metadata.name=") and "," not in selector:
            name = selector.removeprefix("metadata.name=")
    verb = verb or {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method
    )
    if verb is None:
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    bound: list[dict[str, Any]] = []
    for binding in docs:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        if not any(s["name"] == account for s in binding["subjects"]):
            continue
        if binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] != namespace:
            continue
        ref = binding["roleRef"]
        bound += [
            d for d in docs if d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"]
        ]
    for role in bound:
        for rule in role["rules"]:
            if (
                group in rule["apiGroups"]
                and resource in rule["resources"]
                and verb in rule["verbs"]
                and ("resourceNames" not in rule or name in rule["resourceNames"])
            ):
                return True
    return False


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "fake", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("watch", [False, True], ids=["once", "watch-leader-elect"])
def test_companion_runs_within_the_charts_rbac(tmp_path: Path, watch: bool) -> None:
    """`daemonset reconcile` with the chart's arguments, against a fake API: every call it
    makes is allowed by the companion's Role and ClusterRole, and the agent's RBAC it creates
    grants nothing the companion does not hold (Kubernetes would refuse it without escalate).
    Once: a single pass. Watch: the chart's exact arguments with two replicas (leader election),
    stopped once the agent and the credential copies exist."""
    from tests.fakekube import FakeKube

    docs = render("daemonset.enabled=true", "daemonset.replicas=2")
    deploy = one(docs, "Deployment", f"{FULLNAME}-daemonset")
    container = _container(deploy)
    config = one(docs, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    args = list(_args_of(deploy))
    assert "--watch" in args and "--leader-elect" in args
    if not watch:
        args = [a for a in args if a not in ("--watch", "--leader-elect")]
    args[args.index("--config") + 1] = str(tmp_path / "config.yaml")
    account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    with FakeKube() as kube:
        for name, labels, annotations in (
            (NAMESPACE, {}, {}),
            ("shop", {names.INJECT: "enabled"}, {}),
            ("batch", {}, {names.CREDENTIALS: names.CREDENTIALS_SYNC}),
            ("plain", {}, {}),
        ):
            meta = {"name": name, "labels": {names.NAMESPACE_NAME_LABEL: name, **labels}}
            kube.put({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {**meta, "annotations": annotations}})  # fmt: skip
        kube.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "logaas-credentials", "namespace": NAMESPACE},
                "data": {"client-id": "aWQ=", "client-secret": "c2VjcmV0"},
            }
        )
        command = [*container["command"], *args, "--kubeconfig",
                   str(_kubeconfig(tmp_path / "kubeconfig", kube.url))]  # fmt: skip
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "POD_NAME": "c-0"}
        if watch:
            companion = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            try:
                done = kube.wait_for(
                    lambda: (
                        bool(kube.list("apps/v1", "daemonsets", NAMESPACE))
                        and kube.get("v1", "secrets", "batch", "logaas-credentials") is not None
                    ),
                    timeout=30,
                )
            finally:
                companion.terminate()
                try:
                    output, _ = companion.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    companion.kill()
                    output, _ = companion.communicate()
            assert done, output
            assert kube.requests_for("GET", "/leases/") or kube.requests_for("POST", "/leases")
        else:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=120, check=False, env=env
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        calls = list(kube.requests)
        agent_roles = kube.list("rbac.authorization.k8s.io/v1", "clusterroles")
        copies = {s["metadata"]["namespace"] for s in kube.list("v1", "secrets")}
        daemonsets = kube.list("apps/v1", "daemonsets", NAMESPACE)
    assert daemonsets, "the companion installed no agent DaemonSet"
    assert copies >= {NAMESPACE, "shop", "batch"} and "plain" not in copies
    denied = [
        (c.method, c.path)
        for c in calls
        if not rbac_allows(docs, account, c.method, c.path, c.query)
        # A server-side apply that creates the object is authorized for create as well.
        or (
            c.content_type.startswith("application/apply-patch")
            and not rbac_allows(docs, account, c.method, c.path, c.query, verb="create")
        )
    ]
    assert not denied, f"calls the chart's RBAC refuses: {denied}"
    own = _companion_rules(docs, "ClusterRole")
    for role in agent_roles:
        for rule in role["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert any(
                        set(rule["apiGroups"]) <= set(r["apiGroups"])
                        and resource in r["resources"]
                        and verb in r["verbs"]
                        and "resourceNames" not in r
                        for r in own
                    ), (role["metadata"]["name"], resource, verb)


def test_daemonset_companion_without_credential_sync_and_with_leader_election() -> None:
    docs = render(*CASES["daemonset-ha-nosync"])
    deploy = one(docs, "Deployment", f"{FULLNAME}-daemonset")
    assert deploy["spec"]["replicas"] == 2
    args = _args_of(deploy)
    assert "--no-sync-credentials" in args and "--leader-elect" in args
    cluster_rules = _companion_rules(docs, "ClusterRole")
    assert not [r for r in cluster_rules if "secrets" in r["resources"]]


def test_daemonset_off_renders_no_companion() -> None:
    docs = render(*CASES["daemonset-off"])
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == [FULLNAME]
    assert not [d for d in docs if d["metadata"]["name"].endswith("-daemonset")]


def test_credential_copies_follow_the_secret_name() -> None:
    docs = render("daemonset.enabled=true", "credentials.existingSecret=corp-logaas-key")
    secret_rules = [r for r in _companion_rules(docs, "ClusterRole") if "resourceNames" in r]
    assert secret_rules[-1]["resourceNames"] == ["corp-logaas-key"]


@pytest.mark.parametrize("case", ["default", "certManager", "provided", "daemonset-ha-nosync"])
def test_container_arguments_are_accepted_by_the_cli(case: str) -> None:
    """Every Deployment's command line parses with the real `logaas-webhook` argument parser."""
    from webhook.cli import build_parser

    parser = build_parser()
    deployments = [d for d in render(*CASES[case]) if d["kind"] == "Deployment"]
    assert deployments
    for deploy in deployments:
        container = _container(deploy)
        assert container["command"] == ["logaas-webhook"]
        args = parser.parse_args(container["args"])
        assert callable(args.func)
        if args.command == "serve":
            assert args.namespace_watch is True
            assert (args.tls_auto_secret is not None) == (case not in {"certManager", "provided"})


# --- values that break the schema or the chart's checks fail with a clear message -----------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("tls.mode=selfsigned",), "at '/tls/mode': value must be one of 'auto', 'certManager'"),
        (("logaas.groupId=bad group!",), "at '/logaas/groupId'"),
        (("webhook.podFailurePolicy=Sometimes",), "at '/webhook/podFailurePolicy'"),
        (("webhook.timeoutSeconds=31",), "at '/webhook/timeoutSeconds': maximum"),
        (("replicaCount=0",), "at '/replicaCount': minimum"),
        (("sidecar.resources.limits.cpu=lots",), "at '/sidecar/resources/limits/cpu'"),
        (("sidecar.nativ=true",), "additional properties 'nativ' not allowed"),
        (("unknownTopLevel=1",), "additional properties 'unknownTopLevel' not allowed"),
        (("logaas.logaasAddress=ftp://x",), "at '/logaas/logaasAddress'"),
        (("logaas.logPath=relative/path",), "at '/logaas/logPath'"),
        (("daemonset.replicas=0",), "at '/daemonset/replicas': minimum"),
        (("image.pullPolicy=Sometimes",), "at '/image/pullPolicy'"),
    ],
)
def test_schema_rejects_bad_values(sets: tuple[str, ...], message: str) -> None:
    proc = run_template(*sets)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("logaas.groupId=g", "credentials.existingSecret=c"), "logaas.projectId is required"),
        (("logaas.projectId=p", "credentials.existingSecret=c"), "logaas.groupId is required"),
        (("logaas.projectId=p", "logaas.groupId=g"), "set credentials.existingSecret"),
        (
            (*REQUIRED, "credentials.clientId=x", "credentials.clientSecret=y"),
            "mutually exclusive",
        ),
        ((*REQUIRED, "tls.mode=provided"), "tls.provided.secretName is required"),
        (
            (*REQUIRED, "tls.mode=provided", "tls.provided.secretName=s"),
            "tls.provided.caBundle is required",
        ),
        (
            (
                *REQUIRED,
                "tls.mode=provided",
                "tls.provided.secretName=s",
                "tls.provided.caBundle=bm90IGEgY2VydA==",
            ),
            "must be the base64 encoding of PEM CA certificate",
        ),
    ],
)
def test_chart_checks_fail_with_a_clear_message(sets: tuple[str, ...], message: str) -> None:
    proc = run_template(*sets, required=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_native_sidecars_need_kubernetes_1_29() -> None:
    old = ("--kube-version", "1.28.3")
    proc = run_template(extra=old)
    assert proc.returncode != 0
    assert "sidecar.native=true needs Kubernetes 1.29" in proc.stderr
    assert "set sidecar.native=false" in proc.stderr
    proc = run_template("sidecar.native=false", extra=old)
    assert proc.returncode == 0, proc.stderr
    assert run_template(extra=("--kube-version", "1.29.0")).returncode == 0


# --- values.yaml and values.schema.json themselves ----------------------------------------------


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def test_schema_closes_every_object() -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and path != "/properties/global":
                assert "additionalProperties" in node, f"{path} is open"
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(_schema(), "")
    assert _schema()["additionalProperties"] is False


def test_every_value_is_in_the_schema_and_commented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, schema: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
            for key, item in value.items():
                assert key in schema["properties"], f"{path}.{key} not in the schema"
                walk(item, schema["properties"][key], f"{path}.{key}")

    walk(values, _schema(), "")
    lines = (CHART / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9-]*):")
    commented: dict[int, bool] = {}
    stack: list[tuple[int, bool]] = []  # (indent, commented) of the enclosing keys
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        own = number > 0 and lines[number - 1].strip().startswith("#")
        covered = own or any(c for _, c in stack)
        commented[number] = covered
        assert covered, f"values.yaml line {number + 1} ({line.strip()}) has no comment"
        stack.append((indent, own))
    assert len(commented) > 60
