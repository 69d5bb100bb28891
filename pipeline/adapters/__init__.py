"""I/O clients: Prometheus/Thanos (and later the ML service, KServe, Kubernetes, ArgoCD)."""
