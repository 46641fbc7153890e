"""ferryman: telemetry from many clusters, across Kafka, into the backends you run."""

__all__ = ["__version__"]

__version__ = "0.1.0"
