"""The Prometheus endpoint: hub snapshots as metrics (`exporter`) served over HTTP (`server`)."""

from monitor.metrics.exporter import SnapshotCollector, make_registry
from monitor.metrics.server import DEFAULT_ADDR, MetricsServer, parse_addr

__all__ = ["DEFAULT_ADDR", "MetricsServer", "SnapshotCollector", "make_registry", "parse_addr"]
