"""The streams worker's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class StreamsMetrics:
    """The worker's Prometheus metrics, in their own registry (one per app: tests build many apps)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events_in = Counter("caliper_streams_events_in", "Raw messages consumed", ["topic"],
                                 registry=self.registry)
        self.facts_out = Counter("caliper_streams_facts_out", "Learning facts produced", ["source"],
                                 registry=self.registry)
        self.dead_letters = Counter("caliper_streams_dead_letters", "Messages sent to the dead-letter topic",
                                    ["topic"], registry=self.registry)
        self.conflicts = Counter("caliper_streams_conflicts",
                                 "Events seen again with the same id and different content", ["tenant"],
                                 registry=self.registry)
        self.publish_failures = Counter("caliper_streams_publish_failures",
                                        "Failed attempts to publish a batch (retried)", registry=self.registry)
        self.consumer_lag = Gauge("caliper_streams_consumer_lag", "Messages behind the partition's end",
                                  ["topic", "partition"], registry=self.registry)
