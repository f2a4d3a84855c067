"""Prometheus metrics of one sink process, in their own registry (served by ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rows_inserted = Counter(
            "sink_rows_inserted_total", "Rows inserted into ClickHouse, by table (retries dropped by the dedup "
            "token are counted again)", ["table"], registry=self.registry)
        self.batches = Counter(
            "sink_batches_total", "Windows written and committed (one insert per target table each, unless "
            "rows were isolated)", registry=self.registry)
        self.inserts = Counter(
            "sink_inserts_total", "INSERT statements sent to ClickHouse (each has a fixed cost there), by table: "
            "the entry tables, sink_batches (a window's intent and done marker), sink_rejects, failed_events_in",
            ["table"], registry=self.registry)
        self.insert_seconds = Histogram(
            "sink_insert_seconds", "Latency of one window's write into ClickHouse (intent, insert, done marker)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.insert_failures = Counter(
            "sink_insert_failures_total", "Batch writes that failed and were retried", registry=self.registry)
        self.rejected = Counter(
            "sink_rejected_messages_total", "Messages ClickHouse could not load (kept in sink_rejects with the "
            "reason)", registry=self.registry)
        self.isolating = Counter(
            "sink_isolating_batches_total", "Batches ClickHouse refused for their data, split to isolate the "
            "refused messages", registry=self.registry)
        self.lag = Gauge(
            "sink_consumer_lag", "Messages between the partition's high watermark and the sink's position",
            ["topic", "partition"], registry=self.registry)
        self.backing_off = Gauge(
            "sink_backing_off", "Partitions paused until ClickHouse takes their batch (0 when loading freely)",
            registry=self.registry)
        self.queries = Counter(
            "sink_analyst_queries_total", "Analyst queries by outcome", ["outcome"], registry=self.registry)
