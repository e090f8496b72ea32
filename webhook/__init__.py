"""logaas-webhook: ship Kubernetes logs to Cloud.ru Client Logging (LogaaS)."""

__version__ = "0.1.0"
