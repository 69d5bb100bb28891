"""Ingest: turn what arrives (Alertmanager webhooks, later Kubernetes watch events) into signals on the bus."""
