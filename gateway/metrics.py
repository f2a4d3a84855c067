"""Prometheus metrics of the gateway (one registry per app, so tests and processes don't share state)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily


class TransactionCollector:
    """``gateway_transactions_total`` and what they carried, read from the publisher's counts when scraped (so
    the hot path counts in plain integers)."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._stats()
        if stats is None:
            return
        for name, text, value in (
                ("gateway_transactions", "Kafka transactions committed", stats.transactions),
                ("gateway_transactions_aborted", "Kafka transactions aborted or failed", stats.aborted),
                ("gateway_transaction_requests", "Requests carried by committed transactions", stats.requests),
                ("gateway_transaction_records", "Records carried by committed transactions", stats.records)):
            yield CounterMetricFamily(name, text, value=value)


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

        self.gc_pauses = Histogram(
            "gateway_gc_pause_seconds", "Pauses of Python's garbage collector (the event loop waits them out)",
            ["generation"], registry=self.registry,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )
        self._gc_started = 0.0

        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._event_children: dict[str, Any] = {}

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._request_children.get((endpoint, status))
        if children is None:
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._request_children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        """For ``gc.callbacks`` (installed by ``gateway.main.run_gateway``): every collection's pause."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.labels(str(info["generation"])).observe(time.perf_counter() - self._gc_started)

    def events_accepted(self, source: str, count: int) -> None:
        child = self._event_children.get(source)
        if child is None:
            child = self._event_children[source] = self.events.labels(source)
        child.inc(count)
