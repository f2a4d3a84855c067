"""The streams agent, driven through faust's ``agent.test_context()`` with a recording publisher."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import faust
import orjson
import pytest
from faust.types.tuples import ConsumerMessage
from pydantic import SecretStr

from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.kafka import KafkaSettings, partition_key
from schemas.privacy import MissingPrivacyKeyError, PrivacySettings, student_key_for
from schemas.reasons import ReasonCode
from schemas.record_batches import OutboundRecord
from schemas.records import RawEvent, pseudonymize_email
from schemas.side_topics import ConflictNotice, DeadLetter
from streams.metrics import StreamsMetrics
from streams.processor import ConflictTracker, fact_key
from streams.settings import StreamsSettings
from streams.worker import AGENT_NAME, ReadCommittedTransport, build_app, withhold_acks

SETTINGS = StreamsSettings(worker_version="9.9.9", conflict_cache_size=100)
PRIVACY = PrivacySettings(email_hash_key=SecretStr("k"), student_key=SecretStr("s"))
KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit.")
TOPICS = KAFKA.topics
USER = "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/user-1"


def timeback_payload(event_id: str = "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594", xp: int = 100) -> bytes:
    return orjson.dumps({
        "id": event_id, "eventTime": "2024-04-24T14:12:00.000Z", "profile": "TimebackProfile",
        "type": "ActivityEvent", "action": "Completed",
        "actor": {"id": USER, "type": "TimebackUser", "email": "[email protected]"},
        "object": {"id": "https://x.example/ctx/1", "type": "TimebackActivityContext", "subject": "Reading",
                   "app": {"name": "PowerPath UI"}},
        "generated": {"id": "https://x.example/c/1", "type": "TimebackActivityMetricsCollection",
                      "items": [{"type": "xpEarned", "value": xp}]},
    })


def raw_message(payload: bytes, event_id: str = "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594",
                job_id: str = "", envelope_index: int = 0) -> bytes:
    raw = RawEvent(tenant="tenant-a", client_id="client-1", source="timeback", event_id=event_id,
                   event_type="ActivityEvent", profile="TimebackProfile", student_id=USER, sensor="s",
                   send_time_ms=1, received_time_ms=2, envelope_index=envelope_index, payload=payload, job_id=job_id)
    encoded: bytes = RawEventCodec().encode_record(raw)
    return encoded


class RecordingPublisher:
    def __init__(self) -> None:
        self.records: list[OutboundRecord] = []

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        self.records.extend(records)

    def on(self, topic: str) -> list[OutboundRecord]:
        return [record for record in self.records if record.topic == topic]


@pytest.fixture
def harness() -> tuple[faust.App, RecordingPublisher, StreamsMetrics]:
    publisher, metrics = RecordingPublisher(), StreamsMetrics()
    app = build_app(SETTINGS, KAFKA, PRIVACY, publisher=publisher, metrics=metrics)
    app.finalize()
    app.flow_control.resume()
    return app, publisher, metrics


def counter(metrics: StreamsMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_build_app_configures_the_worker_from_settings() -> None:
    app = build_app(SETTINGS.model_copy(update={"web_port": 0}), KAFKA.model_copy(update={"partitions": 4}),
                    PRIVACY)
    assert app.conf.id == "caliper-streams"
    assert app.conf.topic_partitions == 4
    assert app.conf.web_enabled is False
    assert str(app.conf.store) == "memory:"
    assert app.conf.broker_session_timeout == SETTINGS.session_timeout_s
    assert app.conf.broker_heartbeat_interval == SETTINGS.heartbeat_interval_s
    [agent] = app.agents.values()
    assert agent.name.endswith(AGENT_NAME)
    assert agent.concurrency == 1
    assert set(agent.channel.topics) == set(TOPICS.raw_topics)


async def test_the_worker_consumer_reads_only_committed_records() -> None:
    """The consumer faust builds for the worker reads with isolation_level=read_committed (faust alone would
    read uncommitted records, those of aborted transactions included); the real-broker test is
    tests/integration/streams/test_streams_kafka.py::test_only_records_of_committed_transactions_become_facts."""
    app = build_app(SETTINGS, KAFKA, PRIVACY)
    assert isinstance(app.transport, ReadCommittedTransport)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # built, not started: no broker
    assert consumer._isolation_level == "read_committed"


async def test_a_raw_event_becomes_an_avro_fact_keyed_by_tenant_and_student(harness: Any) -> None:
    app, publisher, metrics = harness
    agent = next(iter(app.agents.values()))
    async with agent.test_context() as tested:
        event = await tested.put(raw_message(timeback_payload()), key=b"k")
        [result] = tested.results[event.message.offset]
    assert len(result.facts) == 1 and result.dead_letter_reason == ""
    [record] = publisher.on(TOPICS.facts)
    fact = LearningFactCodec().decode_record(record.value)
    assert record.key == b"tenant-a|" + USER.encode() == fact_key(fact) == partition_key("tenant-a", USER)
    assert fact.xp_earned == 100.0 and fact.student_email_hash == pseudonymize_email("[email protected]", b"k")
    assert fact.normalizer_version == "caliper-streams/9.9.9"
    assert fact.student_key == student_key_for("tenant-a", USER, b"s")  # keyed with PRIVACY.student_key
    assert counter(metrics, "caliper_streams_facts_out_total", source="timeback") == 1.0


async def test_a_bad_event_goes_to_the_dead_letters_and_processing_continues(harness: Any) -> None:
    app, publisher, metrics = harness
    agent = next(iter(app.agents.values()))
    garbage = b"\x00\x01 definitely not avro"
    not_normalizable = raw_message(b'{"id": "urn:uuid:1", "type": "ActivityEvent", "profile": "TimebackProfile"}')
    async with agent.test_context() as tested:
        await tested.put(garbage, key=b"g")
        await tested.put(not_normalizable)
        await tested.put(raw_message(timeback_payload()))
    letters = [DeadLetter.from_json(record.value) for record in publisher.on(TOPICS.dead_letters)]
    assert [letter.offset for letter in letters] == [0, 1]
    assert letters[0].original == garbage
    assert letters[0].reason.startswith("SchemaEncodingError")
    assert letters[1].reason.startswith("NormalizationError")
    assert [letter.reason_code for letter in letters] == [ReasonCode.UNDECODABLE, ReasonCode.FIELD_MISSING]
    assert all(letter.worker_version == "9.9.9" for letter in letters)
    wire = orjson.loads(publisher.on(TOPICS.dead_letters)[0].value)  # the JSON shape replay and operators read
    assert set(wire) == {"reason", "worker_version", "topic", "partition", "offset", "original_b64", "tenant",
                         "client_id", "source", "event_id", "job_id", "envelope_index", "time_ms", "reason_code",
                         "batch_index"}
    assert base64.b64decode(wire["original_b64"]) == garbage
    assert publisher.on(TOPICS.dead_letters)[0].key == b"g"
    assert len(publisher.on(TOPICS.facts)) == 1
    assert counter(metrics, "caliper_streams_dead_letters_total", topic=letters[0].topic) == 2.0


async def test_same_event_id_with_other_content_is_published_as_a_conflict(harness: Any) -> None:
    app, publisher, metrics = harness
    agent = next(iter(app.agents.values()))
    async with agent.test_context() as tested:
        await tested.put(raw_message(timeback_payload(xp=100)))
        await tested.put(raw_message(timeback_payload(xp=100)))  # a re-send: same content, no conflict
        await tested.put(raw_message(timeback_payload(xp=250)))  # same id, other content
    facts = [LearningFactCodec().decode_record(r.value) for r in publisher.on(TOPICS.facts)]
    assert len(facts) == 3 and facts[0].content_hash == facts[1].content_hash != facts[2].content_hash
    [conflict] = [ConflictNotice.from_json(record.value) for record in publisher.on(TOPICS.conflicts)]
    assert conflict.event_id == "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594"
    assert conflict.previous_content_hash == facts[0].content_hash
    assert conflict.content_hash == facts[2].content_hash
    assert (conflict.tenant, conflict.worker_version, conflict.offset) == ("tenant-a", "9.9.9", 2)
    assert counter(metrics, "caliper_streams_conflicts_total", tenant="tenant-a") == 1.0


async def test_an_entity_produces_nothing_and_is_no_dead_letter(harness: Any) -> None:
    app, publisher, _ = harness
    agent = next(iter(app.agents.values()))
    entity = orjson.dumps({"id": "https://example.edu/users/1", "type": "Person"})
    raw = RawEvent(tenant="t", client_id="c", source="caliper", event_id="https://example.edu/users/1",
                   event_type="Person", profile="", student_id="", sensor="s", send_time_ms=1, received_time_ms=2,
                   envelope_index=1, payload=entity)
    async with agent.test_context() as tested:
        event = await tested.put(RawEventCodec().encode_record(raw))
        [result] = tested.results[event.message.offset]
        # no fact and no dead letter: only its raw-archive row (every event that decodes is archived)
        assert [record.topic for record in result.records] == ["unit.archive"]
        assert result.facts == [] and result.dead_letter_reason == ""
    assert [record.topic for record in publisher.records] == ["unit.archive"]


@pytest.mark.parametrize("privacy, missing", [
    (PrivacySettings(), ["CALIPER_PRIVACY__EMAIL_HASH_KEY", "CALIPER_PRIVACY__STUDENT_KEY"]),
    (PrivacySettings(email_hash_key=SecretStr("k")), ["CALIPER_PRIVACY__STUDENT_KEY"]),
    (PrivacySettings(student_key=SecretStr("s")), ["CALIPER_PRIVACY__EMAIL_HASH_KEY"]),
])
def test_the_worker_refuses_to_start_without_both_privacy_keys(privacy: PrivacySettings, missing: list[str]) -> None:
    with pytest.raises(MissingPrivacyKeyError) as refused:
        build_app(SETTINGS, KAFKA, privacy)
    assert refused.value.variables == missing
    assert all(name in str(refused.value) for name in missing)


def test_the_conflict_tracker_is_bounded_and_forgets_the_oldest() -> None:
    tracker = ConflictTracker(max_entries=2)
    assert tracker.seen(("t", "a", 0), "h1") is None
    assert tracker.seen(("t", "b", 0), "h1") is None
    assert tracker.seen(("t", "a", 0), "h2") == "h1"
    assert tracker.seen(("t", "c", 0), "h1") is None  # evicts b, the least recently seen
    assert tracker.seen(("t", "b", 0), "h9") is None
    assert tracker.seen(("t", "a", 0), "h2") is None  # same content again: a re-send


async def test_a_failed_publish_is_retried_and_acked_only_once_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[list[OutboundRecord]] = []

    async def flaky(records: Sequence[OutboundRecord]) -> None:
        attempts.append(list(records))
        assert acked == []  # nothing is acked while the batch is undelivered
        if len(attempts) < 3:
            raise OSError("broker unreachable")

    metrics = StreamsMetrics()
    app = build_app(SETTINGS.model_copy(update={"publish_retry_initial_s": 0.01}), KAFKA, PRIVACY, publisher=flaky,
                    metrics=metrics)
    app.finalize()
    app.flow_control.resume()
    agent = next(iter(app.agents.values()))
    acked = record_acks(app, monkeypatch)
    async with agent.test_context() as tested:
        as_consumed(tested)
        await tested.put(raw_message(timeback_payload()))
    # the event's fact and its raw-archive row, the same each time
    assert len(attempts) == 3 and attempts[0] == attempts[2] and len(attempts[2]) == 2
    assert [message.offset for message in acked] == [0]
    assert counter(metrics, "caliper_streams_publish_failures_total") == 2.0


def test_withheld_events_never_become_committable() -> None:
    app = build_app(SETTINGS, KAFKA, PRIVACY)
    consumer_acks: list[Any] = []

    class RecordingConsumer:
        def ack(self, message: Any) -> bool:
            consumer_acks.append(message)
            return True

    delivered, withheld = (faust.Event(app, None, b"v", None, ConsumerMessage(
        topic="t", partition=0, offset=offset, timestamp=0.0, timestamp_type=0, headers=None, key=None,
        value=b"v", checksum=None)) for offset in (0, 1))
    withhold_acks([withheld])
    for event in (delivered, withheld):
        event.message.ack(RecordingConsumer())  # type: ignore[arg-type]
    assert [message.offset for message in consumer_acks] == [0]


async def test_a_delivered_batch_is_acked_to_the_consumer(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _, _ = harness
    agent = next(iter(app.agents.values()))
    acked = record_acks(app, monkeypatch)
    async with agent.test_context() as tested:
        as_consumed(tested)
        await tested.put(raw_message(timeback_payload()))
        await tested.put(b"garbage")
    assert [message.offset for message in acked] == [0, 1]


def record_acks(app: faust.App, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the messages the stream acks to the consumer (what makes an offset committable)."""
    acked: list[Any] = []

    def ack(message: Any) -> bool:
        acked.append(message)
        return True

    monkeypatch.setattr(app.consumer, "ack", ack)
    return acked


def as_consumed(tested: Any) -> None:
    """Make the test wrapper's messages ConsumerMessages, whose final ack goes to the consumer."""
    make = tested.to_message

    def consumer_message(*args: Any, **kwargs: Any) -> ConsumerMessage:
        made = make(*args, **kwargs)
        return ConsumerMessage(
            topic=made.topic, partition=made.partition, offset=made.offset, timestamp=made.timestamp,
            timestamp_type=made.timestamp_type, headers=made.headers, key=made.key, value=made.value,
            checksum=made.checksum, generation_id=made.generation_id)

    tested.to_message = consumer_message


def test_the_processor_runs_without_faust() -> None:
    """The processing core (decode, normalize, encode, dead letters, conflicts) imports no faust."""
    probe = "import sys, streams.processor, streams.metrics; print(sorted(m for m in sys.modules if m == 'faust'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


async def test_the_job_travels_to_the_facts_and_to_the_dead_letters(harness: Any) -> None:
    app, publisher, _ = harness
    agent = next(iter(app.agents.values()))
    job = "a" * 40
    async with agent.test_context() as tested:
        await tested.put(raw_message(timeback_payload(), job_id=job, envelope_index=3))
        await tested.put(raw_message(b'{"id": "urn:uuid:1", "type": "ActivityEvent", "profile": "TimebackProfile"}',
                                     event_id="urn:uuid:1", job_id=job, envelope_index=4))
        await tested.put(raw_message(timeback_payload()))  # no job (written before receipts): none on its fact
    facts = [LearningFactCodec().decode_record(record.value) for record in publisher.on(TOPICS.facts)]
    assert [(fact.job_id, fact.envelope_index) for fact in facts] == [(job, 3), (None, None)]
    [letter] = [DeadLetter.from_json(record.value) for record in publisher.on(TOPICS.dead_letters)]
    assert (letter.tenant, letter.client_id, letter.source, letter.event_id) == (
        "tenant-a", "client-1", "timeback", "urn:uuid:1")
    assert (letter.job_id, letter.envelope_index) == (job, 4)
    assert letter.time_ms is not None and letter.time_ms > 1_700_000_000_000
