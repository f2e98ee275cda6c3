"""promotion-exporter: watches a Flux OCI promotion pipeline and exports it to Prometheus."""

__version__ = "0.1.0"
