"""Every name the product shares with users: annotations, labels, container and volume names."""

from typing import Final

PREFIX: Final = "logaas/"

# Opt-in / opt-out.
INJECT: Final = "logaas/inject"  # pod annotation "true"/"false"; namespace label enabled/disabled
NS_ENABLED: Final = "enabled"
NS_DISABLED: Final = "disabled"

# Written by the webhook.
STATUS: Final = "logaas/status"
STATUS_INJECTED: Final = "injected"
FLUENT_BIT_CONFIG: Final = "logaas/fluent-bit-config"
FLUENTBIT_EXCLUDE: Final = "fluentbit.io/exclude"

# Per-pod overrides (GROUP_ID, PROJECT_ID and LABELS are namespace defaults too).
GROUP_ID: Final = "logaas/group-id"
PROJECT_ID: Final = "logaas/project-id"
LABELS: Final = "logaas/labels"
LOG_PATH: Final = "logaas/log-path"
LOG_FILES: Final = "logaas/log-files"
CONTAINERS: Final = "logaas/containers"
PARSER: Final = "logaas/parser"
MULTILINE: Final = "logaas/multiline"
SIDECAR_CPU: Final = "logaas/sidecar-cpu"
SIDECAR_MEMORY: Final = "logaas/sidecar-memory"

# Namespace annotation: keep a copy of the credentials Secret here (pod-level opt-in).
CREDENTIALS: Final = "logaas/credentials"
CREDENTIALS_SYNC: Final = "sync"

# What the sidecar adds to a pod.
SIDECAR_CONTAINER: Final = "logaas-fluent-bit"
LOGS_VOLUME: Final = "logaas-logs"
STATE_VOLUME: Final = "logaas-state"
CONFIG_VOLUME: Final = "logaas-config"
CONFIG_FILE: Final = "fluent-bit.conf"

# Env vars the sidecar and the DaemonSet agent read credentials from (referenced as ${VAR}).
ENV_CLIENT_ID: Final = "LOGAAS_IAM_CLIENT_ID"
ENV_CLIENT_SECRET: Final = "LOGAAS_IAM_CLIENT_SECRET"

# Certificate files of the webhook's serving pair and its CA.
CA_FILE: Final = "ca.crt"
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"

# Namespaces that are never injected, whatever they say.
SYSTEM_NAMESPACES: Final = ("kube-system", "kube-public", "kube-node-lease")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
