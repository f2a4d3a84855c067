"""Two streams workers in one consumer group share the raw topics' partitions and together produce exactly the
expected facts (as processes of ``caliper-pipeline streams``, as deployed)."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from published import fact_count, facts_in
from test_streams_kafka import PRIVACY, expected_facts, read_topic, underived, worker_settings

from caliper_pipeline.bench.streams_bench import publish_raw, raw_messages, sample_raw_events
from caliper_pipeline.local.broker import free_port
from caliper_pipeline.local.processes import ChildProcess
from schemas.kafka import KafkaSettings

pytestmark = pytest.mark.integration


def _events_in(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("caliper_streams_events_in_total{"))


async def test_two_workers_share_partitions(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    settings = worker_settings()
    ports = [free_port(), free_port()]
    workers = []
    for index, port in enumerate(ports):
        env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
               "CALIPER_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix, "CALIPER_KAFKA__PARTITIONS": "3",
               "CALIPER_STREAMS__APP_ID": settings.app_id, "CALIPER_STREAMS__WORKER_VERSION": "it",
               "CALIPER_PRIVACY__EMAIL_HASH_KEY": PRIVACY.email_hash_key.get_secret_value(),
               "CALIPER_PRIVACY__STUDENT_KEY": PRIVACY.student_key.get_secret_value(),
               "CALIPER_STREAMS__METRICS_PORT": str(port)}
        workers.append(ChildProcess(f"streams-{index}", [sys.executable, "-m", "caliper_pipeline.cli", "streams"],
                                    env, tmp_path))
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both have joined: their metrics endpoints answer
            try:
                [_events_in(port) for port in ports]
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(3)  # let the group settle on its two members before the events arrive
        raws = sample_raw_events(600, tenant=f"scale-{uuid.uuid4().hex[:6]}")
        await publish_raw(kafka_settings, raw_messages(kafka_settings, raws))
        out = await read_topic(kafka_settings, kafka_settings.topics.facts, expect=len(raws), count=fact_count)
        counts = [_events_in(port) for port in ports]
    finally:
        for worker in workers:
            worker.stop()
    facts = {f.fact_id: f for f in underived(facts_in([value for _, value in out]))}
    want = {f.fact_id: f for f in expected_facts(raws, settings)}
    assert facts == want, "the two workers' facts are exactly the expected ones (re-deliveries collapse by id)"
    assert all(count > 0 for count in counts), f"both workers consumed events: {counts}"
    assert sum(counts) >= len(raws)
