"""Prometheus metrics of the gateway (one registry per app, so tests and processes don't share state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    """The gateway's metrics; the hot path records through ``request_done`` / ``events_accepted``, which keep
    the labelled children (prometheus_client's ``labels()`` costs a lock and a lookup on every call)."""

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

        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._event_children: dict[str, Any] = {}

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._request_children.get((endpoint, status))
        if children is None:
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._request_children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def events_accepted(self, source: str, count: int) -> None:
        child = self._event_children.get(source)
        if child is None:
            child = self._event_children[source] = self.events.labels(source)
        child.inc(count)
