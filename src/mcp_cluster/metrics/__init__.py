"""What an instance counts, and the port of its own it serves the counts on (`MCP_METRICS_PORT`), for
Prometheus: docs/metrics.md names every metric and what it means.
"""

from mcp_cluster.metrics.instance_metrics import Bound, InstanceMetrics

__all__ = ["Bound", "InstanceMetrics"]
