"""Event-driven alert-ingestion and self-healing pipeline for Kubernetes and OpenShift."""

__version__ = "0.1.0"
