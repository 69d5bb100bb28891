"""The reference ML service: the anomaly-detector model over the 45-feature vector, trained on the
project's generated histories at every kind of scope (`training`) or on a real cluster's Prometheus
(`cluster`), evaluated on held-out histories (`evaluate`), fitted, scored and cached (`model`), and served
over KServe v1 and the legacy ML-service routes (`service`, run by `pipeline ml serve`).

Import the submodules directly; this package imports nothing heavy on its own.
"""
