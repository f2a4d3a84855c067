"""The gateway's own metrics that the bench reads: transactions (from the publisher's plain counts, at scrape
time) and the garbage collector's pauses."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics, TransactionCollector
from gateway.transactions import TransactionStats


def samples(metrics: GatewayMetrics) -> dict[str, float]:
    found = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_transaction_counters_read_the_publishers_counts_when_scraped() -> None:
    metrics = GatewayMetrics()
    stats: list[TransactionStats | None] = [None]
    metrics.registry.register(TransactionCollector(lambda: stats[0]))
    assert "gateway_transactions_total" not in samples(metrics)  # before the publisher started
    counts = TransactionStats()
    counts.transactions, counts.aborted, counts.requests, counts.records = 3, 1, 7, 700
    stats[0] = counts
    found = samples(metrics)
    assert found["gateway_transactions_total"] == 3
    assert found["gateway_transactions_aborted_total"] == 1
    assert found["gateway_transaction_requests_total"] == 7
    assert found["gateway_transaction_records_total"] == 700
    counts.transactions += 1  # read again at the next scrape, not copied
    assert samples(metrics)["gateway_transactions_total"] == 4


def test_gc_callback_observes_each_collection_by_generation() -> None:
    metrics = GatewayMetrics()
    gc.callbacks.append(metrics.gc_callback)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        gc.callbacks.remove(metrics.gc_callback)
    found = samples(metrics)
    assert found['gateway_gc_pause_seconds_count{generation="0"}'] >= 1
    assert found['gateway_gc_pause_seconds_count{generation="2"}'] >= 1
    assert found['gateway_gc_pause_seconds_sum{generation="2"}'] > 0
