"""An OTLP/HTTP receiver on loopback, standing in for an OpenTelemetry Collector: it keeps the spans and the metric
names real processes export to it (protobuf, decoded with OpenTelemetry's own `opentelemetry-proto`)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class Span:
    name: str
    scope: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, object]


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)  # the names of the metrics exported
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _value(value: AnyValue) -> object:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@contextmanager
def receiver(port: int) -> Iterator[Received]:
    """Receive OTLP/HTTP on 127.0.0.1:`port` while the block runs."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                spans = [
                    Span(
                        span.name,
                        scoped.scope.name,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        {kv.key: _value(kv.value) for kv in span.attributes},
                    )
                    for resource in request.resource_spans
                    for scoped in resource.scope_spans
                    for span in scoped.spans
                ]
                with received.lock:
                    received.spans.extend(spans)
            elif self.path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                names = {m.name for r in request.resource_metrics for s in r.scope_metrics for m in s.metrics}
                with received.lock:
                    received.metrics |= names
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
