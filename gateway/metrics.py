"""Prometheus metrics of the gateway (one registry per app, so tests and processes don't share state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gateway_requests_total", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.events = Counter("gateway_events_accepted_total", "Events acknowledged after Kafka had them",
                              ["source"], registry=self.registry)
        self.rejects = Counter("gateway_rejects_total", "Rejected requests by reason", ["reason"],
                               registry=self.registry)
        self.latency = Histogram(
            "gateway_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
        self.publish_latency = Histogram(
            "gateway_publish_seconds", "Time until Kafka acknowledged a request's events", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
