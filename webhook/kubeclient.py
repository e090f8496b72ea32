"""The Kubernetes API client: one way to load it, one way to make plain-dict REST calls.

Imported only by the parts that talk to a cluster (namespace cache, tls.mode=auto, the
DaemonSet companion); the admission path never calls the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

JSON = dict[str, Any]


def api_client(kubeconfig: str | Path | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (or $KUBECONFIG).

    Each client gets its own Configuration, so loading one never changes another's.
    """
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
    )
    return client.ApiClient(configuration)


class RestClient:
    """Plain-dict REST calls with the client's configuration, auth and TLS."""

    def __init__(self, api: client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, header_params, serialized, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method, url, header_params=header_params, body=serialized,
            _request_timeout=self.timeout,
        )  # fmt: skip
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(
                http_resp=response, body=data.decode("utf-8", "replace"), data=None
            )
        parsed: JSON = json.loads(data) if data else {}
        return parsed
