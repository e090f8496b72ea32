"""DaemonSet mode: the node agent that ships every namespace the sidecar webhook does not.

Layers (each imports only those above it):
- `routing`: namespaces -> plan (path exclusions, log-group routes, process shards); pure.
- `agentconf`: plan -> Fluent Bit classic configs; `simulate` evaluates such configs.
- `render`: plan -> Kubernetes objects (ServiceAccount, RBAC, ConfigMap, DaemonSet); pure.
- `coverage`: pods + namespaces -> who ships each pod (sidecar, daemonset, ...); pure.
- `kubeapply`, `credentials`, `leader`, `reconcile`: the cluster edge (kubernetes client).
"""
