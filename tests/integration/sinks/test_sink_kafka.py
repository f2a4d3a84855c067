"""Facts on the real broker -> rows in ClickHouse (embedded chDB) exactly once, through failures and kills."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from caliper_pipeline.local.broker import free_port
from schemas.avro.codec import LearningFactCodec
from schemas.kafka import KafkaSettings
from schemas.records import LearningFact, fact_id_for
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseUnavailableError
from sinks.loader import SinkLoader
from sinks.settings import ClickHouseSettings, SinkSettings

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
DAY_MS = 1_700_006_400_000


def make_fact(number: int, run: str) -> LearningFact:
    event_id = f"{run}-{number}"
    return LearningFact(
        fact_id=fact_id_for("school-a", event_id), fact_index=0, content_hash=f"h{number}", tenant="school-a",
        client_id="client", source="hub", event_id=event_id, event_type="GradeEvent", profile="GradingProfile",
        action="Graded", event_time_ms=DAY_MS + number, send_time_ms=DAY_MS + number,
        received_time_ms=DAY_MS + number, student_id=f"student-{number % 37}", xp_earned=1.0)


async def produce(kafka: KafkaSettings, facts: list[LearningFact], *, extra: tuple[bytes, ...] = (),
                  partition: int | None = None) -> None:
    codec = LearningFactCodec()
    producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1 << 20,
                                **kafka.client_options())
    await producer.start()
    try:
        pending = [await producer.send(kafka.topics.facts, codec.encode_record(f), key=f.student_id.encode(),
                                       partition=partition) for f in facts]
        pending += [await producer.send(kafka.topics.facts, raw, key=b"garbage", partition=partition)
                    for raw in extra]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def count(target: ClickHouse, sql: str = "SELECT count() FROM learning.learning_facts") -> int:
    return int(target.scalar(sql))


async def wait_for(condition: Callable[[], Any], timeout: float = 60.0, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


def sink_settings(**changes: Any) -> SinkSettings:
    values: dict[str, Any] = {"batch_rows": 500, "batch_seconds": 0.2, "group_id": f"sink-{uuid.uuid4().hex[:8]}",
                              "retry_backoff_min_seconds": 0.2, "retry_backoff_max_seconds": 1.0}
    return SinkSettings(**(values | changes))


@asynccontextmanager
async def running(loader: SinkLoader) -> AsyncIterator[SinkLoader]:
    task = asyncio.create_task(loader.run())
    try:
        yield loader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_facts_land_exactly_once_and_rejects_are_kept(kafka_settings: KafkaSettings, target: Any) -> None:
    facts = [make_fact(i, "once") for i in range(3000)]
    await produce(kafka_settings, facts, extra=(b"\x00garbage",))
    async with running(SinkLoader(sink_settings(), kafka_settings, target)) as loader:
        await wait_for(lambda: count(target) >= 3000 and count(target, "SELECT count() FROM learning.sink_rejects"))
        await asyncio.sleep(1.0)  # nothing more may arrive
        assert loader.ready
    assert count(target) == 3000
    assert count(target, "SELECT uniqExact(fact_id) FROM learning.learning_facts") == 3000
    assert count(target, "SELECT count() FROM learning.sink_rejects") == 1


async def test_facts_delivered_twice_give_no_duplicate_rows(kafka_settings: KafkaSettings, target: Any) -> None:
    facts = [make_fact(i, "twice") for i in range(2000)]
    await produce(kafka_settings, facts)
    await produce(kafka_settings, facts)
    settings = sink_settings()
    async with running(SinkLoader(settings, kafka_settings, target)) as first:
        await wait_for(lambda: first.rows_written >= 4000)
        await asyncio.sleep(1.0)
    assert first.rows_written == 4000  # both deliveries read once each
    async with running(SinkLoader(settings, kafka_settings, target)) as restarted:
        await asyncio.sleep(3.0)
    assert restarted.rows_written == 0  # committed offsets hold across a restart
    # background merges may already have collapsed the second delivery; FINAL always does
    assert 2000 <= count(target) <= 4000
    assert count(target, "SELECT count() FROM learning.learning_facts FINAL") == 2000
    assert count(target, "SELECT count() FROM learning.current_facts") == 2000
    assert count(target, "SELECT count() FROM learning.fact_conflicts") == 0


class FailingClickHouse:
    """The real client, but inserts (of the partitions named, or all) and pings fail during a window that starts
    after N successful inserts."""

    def __init__(self, inner: ClickHouse, *, fail_after_inserts: int, fail_seconds: float,
                 partitions: set[int] | None = None) -> None:
        self.inner = inner
        self.database = inner.database
        self.inserts = 0
        self.failures = 0
        self.fail_after_inserts = fail_after_inserts
        self.fail_seconds = fail_seconds
        self.partitions = partitions
        self.failing_until: float | None = None

    def _failing(self, token: str = "") -> bool:
        if self.failing_until is None and self.inserts >= self.fail_after_inserts:
            self.failing_until = time.monotonic() + self.fail_seconds
        if self.partitions is not None and int(token.split(":")[1]) not in self.partitions:
            return False
        return self.failing_until is not None and time.monotonic() < self.failing_until

    def insert_avro(self, table: str, container: bytes, settings: dict[str, Any]) -> None:
        if self._failing(settings["insert_deduplication_token"]):
            self.failures += 1
            raise ClickHouseUnavailableError("injected: ClickHouse is down")
        self.inner.insert_avro(table, container, settings)
        self.inserts += 1

    def ping(self) -> bool:
        return (self.partitions is not None or not self._failing()) and self.inner.ping()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_nothing_is_lost_while_clickhouse_fails(kafka_settings: KafkaSettings, target: Any) -> None:
    flaky = typing.cast(ClickHouse, FailingClickHouse(target, fail_after_inserts=2, fail_seconds=3.0))
    facts = [make_fact(i, "flaky") for i in range(5000)]
    await produce(kafka_settings, facts)
    not_ready_seen = False
    async with running(SinkLoader(sink_settings(batch_rows=300), kafka_settings, flaky)) as loader:
        deadline = time.monotonic() + 90
        while count(target) < 5000 and time.monotonic() < deadline:
            not_ready_seen = not_ready_seen or (loader.started and not loader.ready)
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert loader.ready
        assert loader.metrics.insert_failures._value.get() >= 1
    assert typing.cast(FailingClickHouse, flaky).failures >= 1 and not_ready_seen
    assert count(target) == 5000
    assert count(target, "SELECT uniqExact(fact_id) FROM learning.learning_facts") == 5000


async def test_a_poison_envelope_does_not_stop_the_other_tenants(kafka_settings: KafkaSettings,
                                                                 target: Any) -> None:
    """One student's events spread over 150 months (ClickHouse refuses such an insert: "Too
    many partitions for single INSERT block") plus undecodable messages, on one partition, mixed into ordinary
    traffic. Everything ordinary loads, the poison events are accounted for (loaded, or in sink_rejects with the
    reason), and the loader keeps running."""
    month_ms = 31 * 86_400_000
    poison = [replace(make_fact(i, "poison"), student_id="poison-student", tenant="tenant-p",
                      event_time_ms=i * month_ms) for i in range(150)]
    ordinary = [make_fact(i, "ordinary") for i in range(3000)]
    await produce(kafka_settings, ordinary[:1500])
    await produce(kafka_settings, poison, extra=(b"\x00garbage", b"\xc3\x01" + b"\x00" * 8), partition=0)
    await produce(kafka_settings, ordinary[1500:])
    async with running(SinkLoader(sink_settings(batch_rows=5000, batch_seconds=0.5), kafka_settings,
                                  target)) as loader:
        await wait_for(lambda: count(target, "SELECT count() FROM learning.learning_facts WHERE tenant = 'school-a'")
                       >= 3000, timeout=60)
        await wait_for(lambda: count(target, "SELECT count() FROM learning.learning_facts WHERE tenant = 'tenant-p'")
                       + count(target, "SELECT count() FROM learning.sink_rejects") >= 152, timeout=60)
        assert loader.ready and not loader.paused
    assert count(target, "SELECT count() FROM learning.learning_facts FINAL WHERE tenant = 'school-a'") == 3000
    assert count(target, "SELECT count() FROM learning.learning_facts FINAL WHERE tenant = 'tenant-p'") == 150
    assert count(target, "SELECT count() FROM learning.sink_rejects FINAL") == 2
    assert loader.metrics.isolating._value.get() >= 1


async def test_a_partition_clickhouse_refuses_waits_alone(kafka_settings: KafkaSettings, target: Any) -> None:
    """While ClickHouse refuses the batches of partition 0, partitions 1 and 2 keep loading; partition 0 loads
    everything once ClickHouse takes it again (nothing lost, nothing doubled)."""
    flaky = FailingClickHouse(target, fail_after_inserts=0, fail_seconds=8.0, partitions={0})
    per_partition = {p: [make_fact(p * 10_000 + i, f"p{p}") for i in range(400)] for p in range(3)}
    for partition, facts in per_partition.items():
        await produce(kafka_settings, facts, partition=partition)
    loader = SinkLoader(sink_settings(), kafka_settings, typing.cast(ClickHouse, flaky))
    paused_seen: set[int] = set()

    async def watch() -> None:
        while True:
            paused_seen.update(tp.partition for tp in loader.paused)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    async with running(loader):
        others = "SELECT count() FROM learning.learning_facts WHERE event_id LIKE 'p1-%' OR event_id LIKE 'p2-%'"
        await wait_for(lambda: count(target, others) >= 800, timeout=30)
        # the others are all in while partition 0 is still refused
        assert flaky.failing_until is not None and time.monotonic() < flaky.failing_until
        assert count(target, "SELECT count() FROM learning.learning_facts WHERE event_id LIKE 'p0-%'") == 0
        await wait_for(lambda: count(target) >= 1200, timeout=60)
    watcher.cancel()
    assert paused_seen == {0}  # only the refused partition ever waited
    assert count(target) == 1200 and flaky.failures >= 1


ANALYST_TOKEN = "analyst-" + uuid.uuid4().hex


def start_sink_process(kafka: KafkaSettings, data_path: Path, port: int, group: str) -> subprocess.Popen[bytes]:
    """``caliper-pipeline sink`` configured the way every process is: ``CALIPER_<SECTION>__<FIELD>`` variables."""
    kafka_env = {f"CALIPER_KAFKA__{name.upper()}": str(value)
                 for name, value in kafka.model_dump(mode="json").items() if value is not None}
    env = os.environ | kafka_env | {
        "PYTHONPATH": str(REPO_ROOT),
        "CALIPER_SINK__BATCH_ROWS": "700", "CALIPER_SINK__BATCH_SECONDS": "0.3", "CALIPER_SINK__GROUP_ID": group,
        "CALIPER_SINK__HTTP_PORT": str(port), "CALIPER_SINK__ANALYST_TOKEN": ANALYST_TOKEN,
        # one stable instance id, as a restarted pod keeps its name: the restart takes the partitions back at
        # once instead of waiting ~10 s for the killed process's session to expire
        "CALIPER_SINK__GROUP_INSTANCE_ID": f"{group}-0",
        "CALIPER_CLICKHOUSE__DATA_PATH": str(data_path),
    }
    return subprocess.Popen([sys.executable, "-m", "caliper_pipeline.cli", "sink"], cwd=REPO_ROOT, env=env)


async def sql_count(port: int, sql: str) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, session.post(
                f"http://127.0.0.1:{port}/sql", params={"format": "JSON"}, data=sql,
                headers={"Authorization": f"Bearer {ANALYST_TOKEN}"}) as response:
            if response.status != 200:
                return None
            return int(next(iter((await response.json())["data"][0].values())))
    except (TimeoutError, aiohttp.ClientError):
        return None


async def test_a_sink_killed_mid_batch_loses_and_doubles_nothing(kafka_settings: KafkaSettings,
                                                                 tmp_path: Path) -> None:
    total = 40_000
    await produce(kafka_settings, [make_fact(i, "kill") for i in range(total)])
    group, data_path = f"sink-{uuid.uuid4().hex[:8]}", tmp_path / "chdb"
    count_sql = "SELECT count() FROM learning.learning_facts"
    for attempt in range(2):  # killed once after some batches, then killed again, then run to the end
        port = free_port()
        process = start_sink_process(kafka_settings, data_path, port, group)
        try:
            seen = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen = await sql_count(port, count_sql) or 0
                if seen >= (attempt + 1) * 8000:
                    break
                await asyncio.sleep(0.05)
            assert 0 < seen < total, "the sink should be killed while it still has work"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    port = free_port()
    process = start_sink_process(kafka_settings, data_path, port, group)
    try:
        deadline = time.monotonic() + 120
        while (await sql_count(port, "SELECT count() FROM learning.learning_facts FINAL") or 0) < total:
            assert time.monotonic() < deadline, "not every fact arrived after the restarts"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)
        assert await sql_count(port, count_sql) == total  # no FINAL: no batch was inserted twice
        assert await sql_count(port, "SELECT uniqExact(fact_id) FROM learning.learning_facts") == total
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.slow
async def test_bench_loads_every_row_and_reports_rates(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    from caliper_pipeline.bench.sink_bench import run_bench

    rows = int(os.environ.get("CALIPER_BENCH_ROWS", "100000"))
    report = await run_bench(kafka_settings, ClickHouseSettings(data_path=tmp_path / "chdb"), rows)
    print("sink bench:", json.dumps(report))
    assert report["rows"] == rows and report["end_to_end_rows_per_s"] > 0
