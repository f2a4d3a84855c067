"""The e2e bench's CPU accounting and report (where the time goes end to end)."""

from __future__ import annotations

import os
import time

import pytest

from caliper_pipeline import cli
from caliper_pipeline.bench.e2e import FRESHNESS_TARGET_AT_RATE, cpu_report, process_cpu, render_markdown


def test_process_cpu_reads_this_process_as_the_load_generator() -> None:
    before = process_cpu({})
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn CPU that /proc must see
        pass
    after = process_cpu({"self-again": os.getpid()})
    assert set(before) == {"loadgen"}
    assert after["loadgen"] - before["loadgen"] >= 0.2
    assert after["self-again"] >= after["loadgen"] - 0.05


def test_cpu_report_per_event_and_total() -> None:
    report = cpu_report({"sink": 1.0, "streams": 2.0}, {"sink": 3.0, "streams": 8.0}, seconds=4.0, events=2_000)
    assert report["sink"] == {"cpu_seconds": 2.0, "share_of_a_core": 0.5, "us_per_event": 1000.0}
    assert report["streams"]["us_per_event"] == 3000.0
    assert report["all"] == {"cpu_seconds": 8.0, "share_of_a_core": 2.0, "us_per_event": 4000.0}


def _result(rate: float | None, meets_freshness: bool | None) -> dict[str, object]:
    return {"date": "d", "machine": "m", "stack": "s", "seconds": 60.0, "rate": rate, "senders": 8,
            "envelope_size": 50, "sustained_events_per_s": 6100.0, "e2e_events_per_s": 5900.0,
            "meets_throughput_target": False, "gateway_p50_ms": 1.0, "gateway_p99_ms": 2.0,
            "freshness_p50_s": 1.0, "freshness_p95_s": 1.5, "freshness_max_s": 2.5,
            "meets_freshness_target": meets_freshness, "freshness_samples": 10, "freshness_poll_interval_s": 0.5,
            "drain_seconds_after_load": 1.0, "acknowledged_distinct": 10, "clickhouse_distinct": 10, "exact": True,
            "duplicate_rows_after_final": 0, "rejected_events": 0, "rejected_topic_messages": 0, "dead_letters": 0,
            "per_tenant": {}, "cpu_by_process": cpu_report({"sink": 0.0}, {"sink": 1.0}, 2.0, 1000)}


def test_the_report_states_issue_13s_targets_and_the_cpu_table() -> None:
    text = render_markdown(_result(None, None))
    assert "target: both >= 6,000: **no**" in text
    assert f"n/a (a run at <= {FRESHNESS_TARGET_AT_RATE:,.0f} events/s)" in text
    assert "| sink | 1.0 | 0.50 | 1,000.0 |" in text
    assert "target p95 <= 2 s: yes" in render_markdown(_result(3000.0, True))


def test_streams_workers_are_bounded_by_the_topics_partitions(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound is the partitions setting (schemas.kafka), not a copy of its default: no stack is started."""
    monkeypatch.delenv("CALIPER_KAFKA__PARTITIONS", raising=False)
    for workers in ("0", "7"):
        assert cli.main(["bench", "e2e", "--streams-workers", workers, "--seconds", "1"]) == 1
        assert f"--streams-workers {workers}: from 1 to the topics' 6 partitions" in capsys.readouterr().err
    monkeypatch.setenv("CALIPER_KAFKA__PARTITIONS", "2")
    assert cli.main(["bench", "e2e", "--streams-workers", "3", "--seconds", "1"]) == 1
    assert "--streams-workers 3: from 1 to the topics' 2 partitions" in capsys.readouterr().err
